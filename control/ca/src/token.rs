//! Join tokens: `base64url(claims JSON) "." base64url(HMAC-SHA256(secret, first part))`.
//! The claims name one identity (namespace, service), an id and an expiry. The secret (32
//! random bytes, file mode 0600) never leaves the control plane. Every creation and
//! revocation is appended to `tokens.jsonl` and fsynced before it is answered, so revocations
//! survive restarts; the log keeps claims only, never a token.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::watch;

use crate::files::{append_line, open_log, random, unix_ms, write_atomic};
use crate::kek::Kek;
use crate::shared_roots::shared;
use crate::CaError;
use weft_store::SharedState;

const SECRET_FILE: &str = "token-secret";
const LOG_FILE: &str = "tokens.jsonl";
/// Tokens longer than this are refused before any decoding.
const MAX_TOKEN_LEN: usize = 2048;
/// The longest token lifetime. A token is a bearer credential for its identity: one that
/// lives longer must be re-created (and the old one revoked) instead.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Clock slack allowed between a token's creation and a later verification's idea of now.
const EXPIRY_SLACK_SECS: u64 = 3600;

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub id: String,
    #[serde(rename = "ns")]
    pub namespace: String,
    #[serde(rename = "svc")]
    pub service: String,
    /// Unix seconds.
    pub exp: u64,
}

/// A token as `weft token list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    #[serde(flatten)]
    pub claims: Claims,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds.
    pub revoked_at: Option<u64>,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token (the sidecar's bootstrap needs `weft bootstrap --token`)")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token signature does not verify (not issued by this control plane)")]
    BadSignature,
    #[error("token {id} expired at {exp} (unix seconds)")]
    Expired { id: String, exp: u64 },
    #[error("token {id} was revoked")]
    Revoked { id: String },
}

impl TokenError {
    /// A short label for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed(_) => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Expired { .. } => "expired",
            Self::Revoked { .. } => "revoked",
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LogEntry {
    Create(TokenRecord),
    Revoke { id: String, at: u64 },
}

struct Inner {
    records: BTreeMap<String, TokenRecord>,
    /// The log file; `None` when the tokens live in shared state.
    log: Option<File>,
}

/// Tokens kept in shared state (replicas): the secret sealed in `ca/token-secret`, each
/// token's record under `tokens/<id>`, a revocation a compare-and-swap on that record.
struct SharedTokens {
    state: Arc<dyn SharedState>,
}

/// The shared document holding the token secret, sealed.
pub(crate) const SHARED_SECRET: &str = "ca/token-secret";
/// The shared directory of token records.
const SHARED_DIR: &str = "tokens";
/// At most this many token records are read from shared state.
const MAX_SHARED_TOKENS: usize = 100_000;

/// Creates, verifies and revokes join tokens.
pub struct Tokens {
    secret: [u8; 32],
    log_path: PathBuf,
    shared: Option<SharedTokens>,
    inner: Mutex<Inner>,
    /// Bumped on every revocation: open streams check their token again.
    revoked: watch::Sender<u64>,
}

// === impl Tokens ===

impl Tokens {
    /// Opens the token state kept in `dir` (the CA's directory), creating the secret.
    pub fn open(dir: &Path) -> Result<Self, CaError> {
        crate::files::private_dir(dir).map_err(|e| CaError::io(dir, e))?;
        let secret_path = dir.join(SECRET_FILE);
        let secret = match std::fs::read(&secret_path) {
            Ok(bytes) => bytes.try_into().map_err(|_| CaError::Corrupt {
                path: secret_path.clone(),
                reason: "expected 32 bytes".into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = random::<32>()?;
                write_atomic(&secret_path, &secret, 0o600)
                    .map_err(|e| CaError::io(&secret_path, e))?;
                secret
            }
            Err(e) => return Err(CaError::io(&secret_path, e)),
        };
        let log_path = dir.join(LOG_FILE);
        let (records, torn_at) = read_log(&log_path)?;
        let log = open_log(&log_path).map_err(|e| CaError::io(&log_path, e))?;
        if let Some(len) = torn_at {
            // Cut the torn line off, or the next append would be glued to it.
            log.set_len(len).map_err(|e| CaError::io(&log_path, e))?;
        }
        let (revoked, _) = watch::channel(0);
        Ok(Self {
            secret,
            log_path,
            shared: None,
            inner: Mutex::new(Inner {
                records,
                log: Some(log),
            }),
            revoked,
        })
    }

    /// Opens the tokens kept in shared state: the first replica makes the secret (sealed
    /// with `kek`, created by compare-and-swap so every replica ends up with the same one).
    pub fn open_shared(state: Arc<dyn SharedState>, kek: &Kek) -> Result<Self, CaError> {
        let secret = crate::secrets::open_shared_secret(&*state, kek, SHARED_SECRET, None)?;
        let (revoked, _) = watch::channel(0);
        let tokens = Self {
            secret,
            log_path: PathBuf::from(state.describe(SHARED_DIR)),
            shared: Some(SharedTokens { state }),
            inner: Mutex::new(Inner {
                records: BTreeMap::new(),
                log: None,
            }),
            revoked,
        };
        tokens.reload()?;
        Ok(tokens)
    }

    /// Reads the token records of shared state again (another replica created or revoked
    /// one); a revocation seen here closes this replica's streams using it. Whether
    /// anything changed; nothing to do for tokens kept in a file.
    pub fn reload(&self) -> Result<bool, CaError> {
        let Some(shared_tokens) = &self.shared else {
            return Ok(false);
        };
        let entries = shared_tokens
            .state
            .list(SHARED_DIR, MAX_SHARED_TOKENS)
            .map_err(shared)?;
        let mut records = BTreeMap::new();
        for (key, bytes) in entries {
            match serde_json::from_slice::<TokenRecord>(&bytes) {
                Ok(record) if record.claims.id == key => {
                    records.insert(key, record);
                }
                // Skipped, not fatal: one bad record must not lock every sidecar out.
                _ => {
                    tracing::error!(key = %shared_tokens.state.describe(&format!("{SHARED_DIR}/{key}")), "a token record that does not decode (or names another id) is ignored")
                }
            }
        }
        let mut inner = self.lock();
        if inner.records == records {
            return Ok(false);
        }
        let revoked = records.iter().any(|(id, r)| {
            r.revoked_at.is_some()
                && inner
                    .records
                    .get(id)
                    .is_some_and(|o| o.revoked_at.is_none())
        });
        inner.records = records;
        drop(inner);
        if revoked {
            self.revoked.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(true)
    }

    /// A token another replica created after this one last read: its record, read at once
    /// (only for a token whose signature verified, so only for tokens this mesh made).
    fn fetch_shared(&self, id: &str) -> Option<TokenRecord> {
        let shared_tokens = self.shared.as_ref()?;
        let doc = match shared_tokens.state.read(&format!("{SHARED_DIR}/{id}")) {
            Ok(doc) => doc?,
            Err(error) => {
                tracing::warn!(%error, id, "cannot read a token record from shared state");
                return None;
            }
        };
        let record: TokenRecord = serde_json::from_slice(&doc.bytes).ok()?;
        (record.claims.id == id).then(|| {
            self.lock().records.insert(id.to_string(), record.clone());
            record
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mac(&self) -> Result<Hmac<Sha256>, CaError> {
        Hmac::<Sha256>::new_from_slice(&self.secret).map_err(|_| CaError::Random)
    }

    /// A new token for `namespace/service`, valid for `ttl` (1 s to [`MAX_TOKEN_TTL`]). The
    /// control plane's own namespace ([`crate::RESERVED_NAMESPACE`]) is refused.
    pub fn create(
        &self,
        namespace: &str,
        service: &str,
        ttl: Duration,
    ) -> Result<(String, TokenRecord), CaError> {
        crate::authority::check_name("namespace", namespace)?;
        crate::authority::check_name("service", service)?;
        crate::authority::check_not_reserved(namespace)?;
        if ttl.as_secs() == 0 || ttl > MAX_TOKEN_TTL {
            return Err(CaError::OutOfRange {
                what: "token ttl",
                seconds: ttl.as_secs(),
                max: MAX_TOKEN_TTL.as_secs(),
            });
        }
        let now = unix_ms(SystemTime::now()) / 1000;
        let id: String = random::<8>()?.iter().map(|b| format!("{b:02x}")).collect();
        let claims = Claims {
            id: id.clone(),
            namespace: namespace.into(),
            service: service.into(),
            exp: now
                .checked_add(ttl.as_secs())
                .ok_or(CaError::Time("token expiry"))?,
        };
        let token = self.sign(&claims)?;
        let record = TokenRecord {
            claims,
            created: now,
            revoked_at: None,
        };
        if let Some(shared_tokens) = &self.shared {
            let name = format!("{SHARED_DIR}/{id}");
            let bytes = serde_json::to_vec(&record).map_err(|e| CaError::Shared(e.to_string()))?;
            if shared_tokens
                .state
                .write(&name, bytes, 0)
                .map_err(shared)?
                .is_none()
            {
                return Err(CaError::Contended(shared_tokens.state.describe(&name)));
            }
            self.lock().records.insert(id, record.clone());
            return Ok((token, record));
        }
        let mut inner = self.lock();
        self.append(&mut inner, &LogEntry::Create(record.clone()))?;
        inner.records.insert(id, record.clone());
        Ok((token, record))
    }

    /// `base64url(claims JSON) "." base64url(HMAC)`.
    pub(crate) fn sign(&self, claims: &Claims) -> Result<String, CaError> {
        let payload = serde_json::to_vec(claims).map_err(|e| CaError::Corrupt {
            path: self.log_path.clone(),
            reason: e.to_string(),
        })?;
        let head = URL_SAFE_NO_PAD.encode(payload);
        let mut mac = self.mac()?;
        mac.update(head.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(format!("{head}.{tag}"))
    }

    /// Checks a token at `now`: signature (constant-time), expiry, revocation.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long"));
        }
        let (head, tag) = token
            .split_once('.')
            .ok_or(TokenError::Malformed("expected <claims>.<signature>"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let mut mac = self.mac().map_err(|_| TokenError::BadSignature)?;
        mac.update(head.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(head)
            .map_err(|_| TokenError::Malformed("claims are not base64url"))?;
        let claims: Claims = serde_json::from_slice(&payload)
            .map_err(|_| TokenError::Malformed("claims are not the expected JSON"))?;
        let now = unix_ms(now) / 1000;
        if now >= claims.exp {
            return Err(TokenError::Expired {
                id: claims.id,
                exp: claims.exp,
            });
        }
        // A token outliving the maximum lifetime was not made by a correct control plane
        // (or by one before the bound existed): refused, whatever its signature says.
        let latest = now
            .saturating_add(MAX_TOKEN_TTL.as_secs())
            .saturating_add(EXPIRY_SLACK_SECS);
        if claims.exp > latest {
            return Err(TokenError::Malformed(
                "expiry beyond the maximum token lifetime",
            ));
        }
        if claims
            .namespace
            .eq_ignore_ascii_case(crate::RESERVED_NAMESPACE)
        {
            return Err(TokenError::Malformed(
                "names the control plane's reserved namespace",
            ));
        }
        let known = self.lock().records.get(&claims.id).cloned();
        let revoked = known
            .or_else(|| self.fetch_shared(&claims.id))
            .is_none_or(|r| r.revoked_at.is_some());
        if revoked {
            // A token this control plane has no record of was issued before its log was
            // lost: refused like a revoked one.
            return Err(TokenError::Revoked { id: claims.id });
        }
        Ok(claims)
    }

    /// Revokes token `id`; `Ok(false)` when there is no such token. Open streams using it are
    /// told through [`Tokens::subscribe_revocations`].
    pub fn revoke(&self, id: &str) -> Result<bool, CaError> {
        let now = unix_ms(SystemTime::now()) / 1000;
        if self.shared.is_some() {
            return self.revoke_shared(id, now);
        }
        let mut inner = self.lock();
        match inner.records.get(id) {
            None => return Ok(false),
            Some(r) if r.revoked_at.is_some() => return Ok(true),
            Some(_) => {}
        }
        self.append(
            &mut inner,
            &LogEntry::Revoke {
                id: id.to_string(),
                at: now,
            },
        )?;
        if let Some(record) = inner.records.get_mut(id) {
            record.revoked_at = Some(now);
        }
        drop(inner);
        self.revoked.send_modify(|n| *n = n.wrapping_add(1));
        Ok(true)
    }

    /// [`Tokens::revoke`] in shared state: a compare-and-swap on the token's record.
    fn revoke_shared(&self, id: &str, now: u64) -> Result<bool, CaError> {
        let Some(shared_tokens) = &self.shared else {
            return Ok(false);
        };
        let name = format!("{SHARED_DIR}/{id}");
        for _ in 0..5 {
            let Some(doc) = shared_tokens.state.read(&name).map_err(shared)? else {
                return Ok(false);
            };
            let mut record: TokenRecord =
                serde_json::from_slice(&doc.bytes).map_err(|e| CaError::Corrupt {
                    path: PathBuf::from(shared_tokens.state.describe(&name)),
                    reason: e.to_string(),
                })?;
            if record.revoked_at.is_none() {
                record.revoked_at = Some(now);
                let bytes =
                    serde_json::to_vec(&record).map_err(|e| CaError::Shared(e.to_string()))?;
                let written = shared_tokens.state.write(&name, bytes, doc.revision);
                if written.map_err(shared)?.is_none() {
                    continue;
                }
            }
            self.lock().records.insert(id.to_string(), record);
            self.revoked.send_modify(|n| *n = n.wrapping_add(1));
            return Ok(true);
        }
        Err(CaError::Contended(shared_tokens.state.describe(&name)))
    }

    /// Every token created, oldest first.
    pub fn list(&self) -> Vec<TokenRecord> {
        let mut records: Vec<TokenRecord> = self.lock().records.values().cloned().collect();
        records.sort_by(|a, b| (a.created, &a.claims.id).cmp(&(b.created, &b.claims.id)));
        records
    }

    /// Changes on every revocation.
    pub fn subscribe_revocations(&self) -> watch::Receiver<u64> {
        self.revoked.subscribe()
    }

    fn append(&self, inner: &mut Inner, entry: &LogEntry) -> Result<(), CaError> {
        let line = serde_json::to_string(entry).map_err(|e| CaError::Corrupt {
            path: self.log_path.clone(),
            reason: e.to_string(),
        })?;
        let Some(log) = inner.log.as_mut() else {
            return Err(CaError::Shared("the token log is in shared state".into()));
        };
        append_line(log, &line).map_err(|e| CaError::io(&self.log_path, e))
    }
}

type Records = BTreeMap<String, TokenRecord>;

/// Reads the log; a torn last line (a crash mid-append, never acknowledged) is skipped and
/// its offset returned.
fn read_log(path: &Path) -> Result<(Records, Option<u64>), CaError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((BTreeMap::new(), None)),
        Err(e) => return Err(CaError::io(path, e)),
    };
    let mut records = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        let entry: LogEntry = match serde_json::from_str(line) {
            Ok(entry) => entry,
            Err(_) if n + 1 == lines.len() && !text.ends_with('\n') => {
                tracing::warn!(path = %path.display(), "dropping a torn last line");
                let good = text.rfind('\n').map_or(0, |i| i + 1);
                return Ok((records, Some(good as u64)));
            }
            Err(e) => {
                return Err(CaError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("line {}: {e}", n + 1),
                })
            }
        };
        match entry {
            LogEntry::Create(record) => {
                records.insert(record.claims.id.clone(), record);
            }
            LogEntry::Revoke { id, at } => {
                if let Some(record) = records.get_mut(&id) {
                    record.revoked_at = Some(at);
                }
            }
        }
    }
    Ok((records, None))
}
