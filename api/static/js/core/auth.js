// Sign-in with OpenID Connect: authorization code flow with PKCE (S256), written for the
// browser with WebCrypto. The provider is the one /api/v1/ui-config names (its JWKS is
// what the API trusts). Tokens live in sessionStorage: gone when the tab closes.

const TOKEN_KEY = "hemhub.auth.token";
const ID_TOKEN_KEY = "hemhub.auth.idToken";
const PENDING_KEY = "hemhub.auth.pending"; // {state, verifier, nonce, returnTo}
const RETURN_KEY = "hemhub.auth.returnTo";

let config = null; // /api/v1/ui-config
let discovery = null; // the provider's /.well-known/openid-configuration
const expiryListeners = new Set();

export class SignInError extends Error {
  constructor(key, detail = "") {
    super(detail || key);
    this.name = "SignInError";
    this.key = key; // an i18n key: the shell says it in the user's language
    this.detail = detail;
  }
}

/** What the server tells the web app: the provider, the client id, the default language. */
export async function loadConfig() {
  if (config) return config;
  const response = await fetch("/api/v1/ui-config", { headers: { Accept: "application/json" } });
  if (!response.ok) throw new SignInError("core.signin.error.config", String(response.status));
  config = await response.json();
  return config;
}

async function providerMetadata() {
  if (discovery) return discovery;
  const cfg = await loadConfig();
  const issuer = cfg.issuer.replace(/\/$/, "");
  let response;
  try {
    response = await fetch(`${issuer}/.well-known/openid-configuration`);
  } catch {
    throw new SignInError("core.signin.error.provider", issuer);
  }
  if (!response.ok) throw new SignInError("core.signin.error.provider", issuer);
  const doc = await response.json();
  // OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it came from.
  if (doc.issuer.replace(/\/$/, "") !== issuer) {
    throw new SignInError("core.signin.error.provider", `issuer ${doc.issuer}`);
  }
  discovery = doc;
  return doc;
}

function base64url(bytes) {
  let text = "";
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomText(bytes = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** RFC 7636 S256: BASE64URL(SHA256(ASCII(code_verifier))). */
export async function pkceChallenge(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(digest);
}

function claimsOf(jwt) {
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(payload), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join(""),
    );
    return JSON.parse(json);
  } catch {
    return null;
  }
}

function redirectUri() {
  return `${location.origin}/`;
}

/** Go to the provider's sign-in; afterwards the app returns to `returnTo` (a hash route). */
export async function signIn(returnTo = location.hash) {
  const meta = await providerMetadata();
  const cfg = await loadConfig();
  const pending = {
    state: randomText(),
    nonce: randomText(),
    verifier: randomText(48), // 64 characters, within RFC 7636's 43..128
    returnTo: returnTo || sessionStorage.getItem(RETURN_KEY) || "",
  };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  const params = new URLSearchParams({
    response_type: "code",
    client_id: cfg.client_id,
    redirect_uri: redirectUri(),
    scope: cfg.scope || "openid profile",
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await pkceChallenge(pending.verifier),
    code_challenge_method: "S256",
    ui_locales: document.documentElement.lang || "sv",
  });
  location.assign(`${meta.authorization_endpoint}?${params}`);
}

/**
 * Back from the provider (?code=...&state=...): exchange the code for tokens.
 * Returns the hash route to show, or null when this page load is not a sign-in return.
 */
export async function completeSignIn() {
  const query = new URLSearchParams(location.search);
  if (!query.has("code") && !query.has("error")) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
  sessionStorage.removeItem(PENDING_KEY);
  history.replaceState(null, "", `/${pending ? pending.returnTo : ""}`); // no code in history
  if (query.has("error")) throw new SignInError("core.signin.error.refused", query.get("error"));
  if (!pending || query.get("state") !== pending.state) {
    throw new SignInError("core.signin.error.state"); // not a sign-in this tab started
  }
  const meta = await providerMetadata();
  const cfg = await loadConfig();
  let response;
  try {
    response = await fetch(meta.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: query.get("code"),
        redirect_uri: redirectUri(),
        client_id: cfg.client_id,
        code_verifier: pending.verifier,
      }),
    });
  } catch {
    throw new SignInError("core.signin.error.provider", meta.token_endpoint);
  }
  const tokens = await response.json().catch(() => ({}));
  if (!response.ok || !tokens.access_token) {
    throw new SignInError("core.signin.error.token", tokens.error_description || tokens.error || "");
  }
  const idClaims = tokens.id_token ? claimsOf(tokens.id_token) : null;
  if (idClaims && idClaims.nonce !== pending.nonce) throw new SignInError("core.signin.error.state");
  sessionStorage.setItem(TOKEN_KEY, tokens.access_token);
  if (tokens.id_token) sessionStorage.setItem(ID_TOKEN_KEY, tokens.id_token);
  sessionStorage.removeItem(RETURN_KEY);
  return pending.returnTo;
}

function storedClaims() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? claimsOf(token) : null;
}

/** The access token while it is valid, else null. */
export function accessToken() {
  const claims = storedClaims();
  if (!claims || (claims.exp && claims.exp * 1000 <= Date.now())) return null;
  return sessionStorage.getItem(TOKEN_KEY);
}

/** The signed-in user: {sub, name, role, tenant, expiresAt} or null. */
export function user() {
  if (!accessToken()) return null;
  const c = storedClaims();
  return {
    sub: c.sub,
    name: c.name || c.sub,
    role: c.role,
    tenant: c.tenant,
    expiresAt: c.exp ? new Date(c.exp * 1000) : null,
  };
}

/** Forget the tokens and end the provider's session when it offers that. */
export async function signOut() {
  const idToken = sessionStorage.getItem(ID_TOKEN_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ID_TOKEN_KEY);
  sessionStorage.removeItem(RETURN_KEY);
  let meta = null;
  try {
    meta = await providerMetadata();
  } catch {
    meta = null; // the provider is unreachable: signed out here all the same
  }
  if (meta && meta.end_session_endpoint) {
    const cfg = await loadConfig();
    const params = new URLSearchParams({
      client_id: cfg.client_id,
      post_logout_redirect_uri: redirectUri(),
    });
    if (idToken) params.set("id_token_hint", idToken);
    location.assign(`${meta.end_session_endpoint}?${params}`);
  } else {
    location.assign(redirectUri());
  }
}

/** The session ran out (expiry, or a 401): forget the token, keep the page to return to. */
export function sessionExpired() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.setItem(RETURN_KEY, location.hash);
  for (const fn of expiryListeners) fn();
}

/** Call `fn()` when the session runs out; returns the unsubscribe function. */
export function onExpired(fn) {
  expiryListeners.add(fn);
  return () => expiryListeners.delete(fn);
}
