// The HMC technician's pages, registered with the shell (js/core/router.js): the fleet
// first (home of the role), then the inventory, stray readings, figures and rollouts.
import { renderFleet } from "./fleet.js";
import { renderHub } from "./hub.js";
import { renderInventory, renderDevice } from "./devices.js";
import { renderReadings } from "./readings.js";
import { renderFigures } from "./figures.js";
import { renderCampaigns, renderCampaign } from "./campaigns.js";
import { renderCatalogue } from "./catalogue.js";
import { renderRegistry, renderResident } from "./registry.js";

const ROLES = ["hmc", "admin"];

export const pages = [
  { path: "/fleet", roles: ROLES, titleKey: "hmc.nav.fleet", nav: true, render: renderFleet },
  { path: "/fleet/hubs/:id", roles: ROLES, titleKey: "hmc.nav.hub", nav: false, render: renderHub },
  { path: "/inventory", roles: ROLES, titleKey: "hmc.nav.inventory", nav: true, render: renderInventory },
  {
    path: "/inventory/devices/:id",
    roles: ROLES,
    titleKey: "hmc.nav.device",
    nav: false,
    render: renderDevice,
  },
  { path: "/readings", roles: ROLES, titleKey: "hmc.nav.readings", nav: true, render: renderReadings },
  { path: "/figures", roles: ROLES, titleKey: "hmc.nav.figures", nav: true, render: renderFigures },
  { path: "/rollouts", roles: ROLES, titleKey: "hmc.nav.rollouts", nav: true, render: renderCampaigns },
  { path: "/rollouts/:id", roles: ROLES, titleKey: "hmc.nav.campaign", nav: false, render: renderCampaign },
  { path: "/catalogue", roles: ROLES, titleKey: "hmc.nav.catalogue", nav: true, render: renderCatalogue },
  { path: "/registry", roles: ROLES, titleKey: "hmc.nav.registry", nav: true, render: renderRegistry },
  { path: "/registry/:id", roles: ROLES, titleKey: "hmc.nav.resident", nav: false, render: renderResident },
];
