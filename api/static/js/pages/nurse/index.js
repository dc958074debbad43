// The nurse's pages (web-nurse adds them here; see docs/ui.md and the web contract).
export const pages = [];
