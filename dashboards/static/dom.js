// Small helpers to build the DOM without a framework.

/** An HTML element: h("a", { href: "#/x", class: "y" }, "text", child, [more]). Attributes
 * that are null, undefined or false are left out; `on<event>` adds a listener. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attributes);
  element.append(...flatten(children));
  return element;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element, like h(). */
export function s(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attributes);
  element.append(...flatten(children));
  return element;
}

function setAttributes(element, attributes) {
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

function flatten(children) {
  return children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : String(c)));
}

/** Text only visible to screen readers. */
export function srOnly(text) {
  return h("span", { class: "visually-hidden" }, text);
}

let ids = 0;
/** A document-unique id for aria-labelledby and label/for pairs. */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/**
 * Re-render without losing the keyboard user's place: the focused element (found again by its
 * data-key) keeps focus, and a text field keeps its caret. When the focused element is gone,
 * focus goes to `fallback(key)` (e.g. the card it was in, or the page heading) rather than to
 * the top of the document.
 */
export function keepingFocus(render, fallback = () => null) {
  const active = document.activeElement;
  const key = active?.dataset?.key;
  const caret = active && typeof active.selectionStart === "number"
    ? [active.selectionStart, active.selectionEnd] : null;
  const hadFocus = active && active !== document.body;
  render();
  if (!hadFocus || (active.isConnected && document.activeElement === active)) return;
  const again = key ? document.querySelector(`[data-key="${CSS.escape(key)}"]`) : null;
  if (again) {
    again.focus({ preventScroll: true });
    if (caret && typeof again.setSelectionRange === "function") {
      try { again.setSelectionRange(...caret); } catch { /* not a text field */ }
    }
  } else if (!active.isConnected) {
    fallback(key)?.focus({ preventScroll: true });
  }
}
