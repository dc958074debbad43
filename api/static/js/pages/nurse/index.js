// The nurse's pages (docs/ui.md): triage first, then residents; an alert's page, a
// resident's charts and their thresholds are reached from those.

import { renderAlert } from "./alert.js";
import { renderResident } from "./resident.js";
import { renderResidents } from "./residents.js";
import { renderThresholds } from "./thresholds.js";
import { renderTriage } from "./triage.js";

const ROLES = ["nurse", "admin"];

export const pages = [
  { path: "/triage", roles: ROLES, titleKey: "nurse.triage.title", nav: true, render: renderTriage },
  { path: "/residents", roles: ROLES, titleKey: "nurse.residents.title", nav: true, render: renderResidents },
  { path: "/alerts/:id", roles: ROLES, titleKey: "nurse.alert.title", nav: false, render: renderAlert },
  { path: "/residents/:id", roles: ROLES, titleKey: "nurse.resident.title", nav: false, render: renderResident },
  {
    path: "/residents/:id/thresholds",
    roles: ROLES,
    titleKey: "nurse.thresholds.title",
    nav: false,
    render: renderThresholds,
  },
];
