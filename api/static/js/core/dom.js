// DOM building without markup strings: every value becomes a text node or a property,
// so nothing a device, a resident's name or the server sends can inject HTML.

/**
 * el("button", {class: "primary", onclick: fn, disabled: true}, "text", childNode, [more])
 * - strings and numbers become text nodes; null, undefined and false are skipped;
 * - `class` / `className` set the class; `dataset` an object of data-* values;
 * - `on<event>` functions become listeners; booleans toggle the attribute;
 * - anything else is set with setAttribute (aria-*, role, href, type...).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class" || name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "value" || name === "checked" || name === "selected") node[name] = value;
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.append(child);
    else node.append(document.createTextNode(String(child)));
  }
}

/** Remove every child of `node`; returns it. */
export function clear(node) {
  node.replaceChildren();
  return node;
}
