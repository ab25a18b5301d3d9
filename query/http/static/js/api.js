// The fetch layer: JSON reads, a Bearer token from localStorage, a token prompt on 401.
const TOKEN_KEY = "roomscope.token";

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY) || "",
  set: (t) => (t ? localStorage.setItem(TOKEN_KEY, t) : localStorage.removeItem(TOKEN_KEY)),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function headers(extra = {}) {
  const t = token.get();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

let prompting = null;
function askToken() {
  if (prompting) return prompting;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  input.value = token.get();
  prompting = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        prompting = null;
        if (dialog.returnValue === "save" && input.value.trim()) {
          token.set(input.value.trim());
          resolve(true);
        } else resolve(false);
      },
      { once: true },
    );
    dialog.showModal();
  });
  return prompting;
}

export function url(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const x of Array.isArray(v) ? v : [v]) if (x !== undefined && x !== null && x !== "") q.append(k, x);
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export async function request(path, params = {}, init = {}) {
  for (;;) {
    const res = await fetch(url(path, params), { ...init, headers: headers(init.headers || {}) });
    if (res.status === 401 && (await askToken())) continue;
    if (!res.ok) {
      let message = `${res.status} ${res.statusText}`;
      try {
        message = (await res.json()).error || message;
      } catch {}
      throw new ApiError(res.status, message);
    }
    return res;
  }
}

export async function get(path, params = {}) {
  return (await request(path, params)).json();
}
