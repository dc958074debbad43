// The HMC technician's pages (web-hmc adds them here; see docs/ui.md and the web contract).
export const pages = [];
