// Entry point of the web app (index.html loads this module).
import { startApp } from "./shell.js";

startApp();
