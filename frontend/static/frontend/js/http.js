// The one HTTP helper of the pages: session cookies, CSRF token from the cookie, JSON in and out.
export function csrfToken() {
  const m = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

// The API's answer when the session has ended (signed out, expired): an edit answered so is kept, not dropped.
export const SIGNED_OUT = 401;

// fetch with JSON; resolves to {status, ok, data} whatever the status (the caller decides, e.g. 409).
export async function request(method, url, body, { keepalive = false } = {}) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    keepalive,
  });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  return { status: response.status, ok: response.ok, data };
}

function failure(url, { status, data }) {
  const detail = data && (data.detail || Object.entries(data).map(([k, v]) => `${k}: ${v}`).join("; "));
  return new Error(detail || `${url}: HTTP ${status}`);
}

// GET a JSON document; throws with the server's message on an error status.
export async function getJSON(url) {
  const r = await request("GET", url);
  if (!r.ok) throw failure(url, r);
  return r.data;
}

// POST JSON; throws with the server's message on an error status.
export async function postJSON(url, body) {
  const r = await request("POST", url, body || {});
  if (!r.ok) throw failure(url, r);
  return r.data;
}
