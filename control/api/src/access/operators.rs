// Over 400 lines: the operator store and its unit tests (first start, hashing, revocation, bounds) belong together.
//! Operator identities: API tokens (256 random bits, shown once, kept only as their SHA-256,
//! with an expiry and a revocation time) in `<data-dir>/operators.json` (mode 0600, replaced
//! atomically and fsync'ed on every change). A name is never reused, not even after a
//! revocation, so an old credential can never come back to life under a new grant.

use super::authz::{Principal, Role};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use weft_store::SharedState;

/// The file under the data directory.
pub const OPERATORS_FILE: &str = "operators.json";
/// Where the first start writes the first admin's token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Token prefix (so a leaked token is recognisable by secret scanners).
pub const TOKEN_PREFIX: &str = "weft_op_";
/// The longest lifetime an operator token may have: one year.
pub const MAX_OPERATOR_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
/// At most this many operators (and namespaces per editor): a bound on the file.
pub const MAX_OPERATORS: usize = 10_000;
pub const MAX_NAMESPACES: usize = 256;

/// One operator as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorRecord {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub namespaces: Vec<String>,
    pub created_by: String,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
    /// Whether a client certificate was issued for it (only then does one authenticate).
    #[serde(default)]
    pub certificate: bool,
    /// Hex SHA-256 of the token; not serialised in API answers (see [`OperatorRecord::public`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

impl OperatorRecord {
    /// The record without its token hash, for listings.
    pub fn public(&self) -> Self {
        Self {
            token_sha256: None,
            ..self.clone()
        }
    }

    fn principal(&self) -> Principal {
        Principal {
            name: self.name.clone(),
            role: self.role,
            namespaces: self.namespaces.clone(),
        }
    }

    fn usable(&self, now_ms: u64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|exp| now_ms < exp)
    }
}

/// Why creating or revoking failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("no operator {0:?}")]
    NotFound(String),
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    /// Shared state (etcd) cannot be reached: nothing was changed.
    #[error("{0}")]
    Unavailable(String),
}

/// The shared document holding every operator (replicas over etcd).
pub const SHARED_OPERATORS: &str = "operators";

/// The operators of one control plane.
pub struct Operators {
    path: PathBuf,
    /// With replicas: the operators are one shared document, changed by compare-and-swap.
    shared: Option<(Arc<dyn SharedState>, AtomicI64)>,
    records: Mutex<Vec<OperatorRecord>>,
}

impl Operators {
    /// Opens `<dir>/operators.json`. When there is none (first start) creates an `admin`
    /// operator and writes its token to `<dir>/admin.token` (0600); returns that path then.
    pub fn open(dir: &Path) -> Result<(Self, Option<PathBuf>), OperatorError> {
        let path = dir.join(OPERATORS_FILE);
        let records: Vec<OperatorRecord> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| OperatorError::Io {
                path: path.clone(),
                reason: format!("unreadable: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path, e)),
        };
        let first_start = records.is_empty();
        let operators = Self {
            path,
            shared: None,
            records: Mutex::new(records),
        };
        if !first_start {
            return Ok((operators, None));
        }
        operators.first_admin(dir)
    }

    /// Opens the operators kept in shared state (every replica authenticates the same
    /// operators). The first replica to start on an empty store creates the `admin`
    /// operator and writes its token to `<dir>/admin.token`, like a first start; the others
    /// find it there.
    pub fn open_shared(
        state: Arc<dyn SharedState>,
        dir: &Path,
    ) -> Result<(Self, Option<PathBuf>), OperatorError> {
        let operators = Self {
            path: PathBuf::from(state.describe(SHARED_OPERATORS)),
            shared: Some((state, AtomicI64::new(0))),
            records: Mutex::new(Vec::new()),
        };
        operators.reload()?;
        if !operators.lock().is_empty() {
            return Ok((operators, None));
        }
        match operators.write_first_admin(dir) {
            Ok(path) => Ok((operators, Some(path))),
            // Another replica made the first admin meanwhile.
            Err(OperatorError::Conflict(_)) => {
                operators.reload()?;
                Ok((operators, None))
            }
            Err(e) => Err(e),
        }
    }

    fn first_admin(self, dir: &Path) -> Result<(Self, Option<PathBuf>), OperatorError> {
        let path = self.write_first_admin(dir)?;
        Ok((self, Some(path)))
    }

    fn write_first_admin(&self, dir: &Path) -> Result<PathBuf, OperatorError> {
        let (token, _) =
            self.create("admin", Role::Admin, Vec::new(), None, false, "weft-serve")?;
        let token_path = dir.join(ADMIN_TOKEN_FILE);
        write_private(&token_path, format!("{token}\n").as_bytes())?;
        Ok(token_path)
    }

    /// Reads the shared document again when another replica changed it (an operator created
    /// or revoked there); whether it changed. Nothing to do for the file (only this process
    /// writes it).
    pub fn reload(&self) -> Result<bool, OperatorError> {
        let mut records = self.lock();
        self.refresh(&mut records)
    }

    fn refresh(&self, records: &mut Vec<OperatorRecord>) -> Result<bool, OperatorError> {
        let Some((state, revision)) = &self.shared else {
            return Ok(false);
        };
        let doc = state
            .read(SHARED_OPERATORS)
            .map_err(|e| OperatorError::Unavailable(e.to_string()))?;
        let Some(doc) = doc else {
            return Ok(false);
        };
        if doc.revision == revision.load(Ordering::Relaxed) {
            return Ok(false);
        }
        *records = serde_json::from_slice(&doc.bytes).map_err(|e| OperatorError::Io {
            path: self.path.clone(),
            reason: format!("unreadable: {e}"),
        })?;
        revision.store(doc.revision, Ordering::Relaxed);
        Ok(true)
    }

    /// Creates an operator; returns its token (the only time it exists in clear).
    pub fn create(
        &self,
        name: &str,
        role: Role,
        mut namespaces: Vec<String>,
        ttl: Option<Duration>,
        certificate: bool,
        created_by: &str,
    ) -> Result<(String, OperatorRecord), OperatorError> {
        check_name("operator name", name)?;
        namespaces.sort();
        namespaces.dedup();
        if namespaces.len() > MAX_NAMESPACES {
            return Err(OperatorError::Invalid(format!(
                "namespaces: {} given, at most {MAX_NAMESPACES}",
                namespaces.len()
            )));
        }
        for ns in &namespaces {
            check_name("namespace", ns)?;
        }
        match (role, namespaces.is_empty()) {
            (Role::Editor, true) => {
                return Err(OperatorError::Invalid(
                    "role editor needs at least one namespace".into(),
                ))
            }
            (Role::Editor, false) | (_, true) => {}
            (_, false) => {
                return Err(OperatorError::Invalid(format!(
                    "namespaces apply to the editor role only, not to {role}"
                )))
            }
        }
        if let Some(ttl) = ttl {
            if ttl.is_zero() || ttl > MAX_OPERATOR_TTL {
                return Err(OperatorError::Invalid(format!(
                    "ttl of {} s is out of range (1 s to {} s)",
                    ttl.as_secs(),
                    MAX_OPERATOR_TTL.as_secs()
                )));
            }
        }
        let secret = random_token()?;
        let now = now_ms();
        let expires_ms =
            ttl.map(|t| now.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX)));
        let record = OperatorRecord {
            name: name.to_string(),
            role,
            namespaces,
            created_by: created_by.to_string(),
            created_ms: now,
            expires_ms,
            revoked_ms: None,
            certificate,
            token_sha256: Some(sha256_hex(&secret)),
        };
        let mut records = self.lock();
        self.refresh(&mut records)?;
        if records.iter().any(|r| r.name == name) {
            return Err(OperatorError::Conflict(format!(
                "operator {name:?} exists (names are never reused, even after a revocation)"
            )));
        }
        if records.len() >= MAX_OPERATORS {
            return Err(OperatorError::Conflict(format!(
                "at most {MAX_OPERATORS} operators"
            )));
        }
        let mut next = records.clone();
        next.push(record.clone());
        self.save(&next)?;
        *records = next;
        Ok((secret, record.public()))
    }

    /// Revokes `name` (effective for the next request). The last usable admin cannot be
    /// revoked (nobody could manage the server any more).
    pub fn revoke(&self, name: &str) -> Result<OperatorRecord, OperatorError> {
        let now = now_ms();
        let mut records = self.lock();
        self.refresh(&mut records)?;
        let mut next = records.clone();
        let index = next
            .iter()
            .position(|r| r.name == name)
            .ok_or_else(|| OperatorError::NotFound(name.to_string()))?;
        if next[index].revoked_ms.is_some() {
            return Ok(next[index].public());
        }
        let admins = next
            .iter()
            .filter(|r| r.role == Role::Admin && r.usable(now))
            .count();
        if next[index].role == Role::Admin && admins <= 1 {
            return Err(OperatorError::Conflict(format!(
                "{name:?} is the last admin; create another admin first"
            )));
        }
        next[index].revoked_ms = Some(now);
        let revoked = next[index].public();
        self.save(&next)?;
        *records = next;
        Ok(revoked)
    }

    pub fn list(&self) -> Vec<OperatorRecord> {
        self.lock().iter().map(OperatorRecord::public).collect()
    }

    pub fn get(&self, name: &str) -> Option<OperatorRecord> {
        self.lock()
            .iter()
            .find(|r| r.name == name)
            .map(OperatorRecord::public)
    }

    /// The principal holding `token`, if it is known, unexpired and not revoked.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
            return None;
        }
        let hash = sha256_hex(token);
        let now = now_ms();
        self.lock()
            .iter()
            .find(|r| r.token_sha256.as_deref() == Some(hash.as_str()))
            .filter(|r| r.usable(now))
            .map(OperatorRecord::principal)
    }

    /// The principal named `name` (an operator client certificate), if usable.
    pub fn by_name(&self, name: &str) -> Option<Principal> {
        let now = now_ms();
        self.lock()
            .iter()
            .find(|r| r.name == name && r.certificate)
            .filter(|r| r.usable(now))
            .map(OperatorRecord::principal)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<OperatorRecord>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the file, or the shared document by compare-and-swap on the revision last
    /// read (a change another replica made in between refuses this one: try again).
    fn save(&self, records: &[OperatorRecord]) -> Result<(), OperatorError> {
        let bytes = serde_json::to_vec_pretty(records).map_err(|e| OperatorError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let Some((state, revision)) = &self.shared else {
            return write_private(&self.path, &bytes);
        };
        let written = state
            .write(SHARED_OPERATORS, bytes, revision.load(Ordering::Relaxed))
            .map_err(|e| OperatorError::Unavailable(e.to_string()))?;
        match written {
            Some(new) => {
                revision.store(new, Ordering::Relaxed);
                Ok(())
            }
            None => Err(OperatorError::Conflict(
                "the operators were changed on another replica meanwhile; try again".into(),
            )),
        }
    }
}

/// Atomically, mode 0600 from creation, fsync'ed ([`weft_store::private::write_atomic`]).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), OperatorError> {
    weft_store::private::write_atomic(path, bytes).map_err(|e| io(path, e))
}

fn io(path: &Path, e: std::io::Error) -> OperatorError {
    OperatorError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Letters, digits, '-', '.', '_'; 1 to 63 bytes (a SPIFFE path segment, a DNS label).
fn check_name(what: &str, value: &str) -> Result<(), OperatorError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && value != "."
        && value != "..";
    if ok {
        Ok(())
    } else {
        Err(OperatorError::Invalid(format!(
            "{what} {value:?}: use 1 to 63 letters, digits, '-', '.' or '_'"
        )))
    }
}

fn random_token() -> Result<String, OperatorError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| OperatorError::Io {
            path: PathBuf::from("/dev/urandom"),
            reason: "the operating system's random generator failed".into(),
        })?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&bytes)))
}

pub(crate) fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_writes_one_admin_token_0600_and_tokens_are_stored_hashed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (ops, written) = Operators::open(dir.path()).unwrap();
        let path = written.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
        assert_eq!(ops.authenticate(&token).unwrap().role, Role::Admin);
        let file = std::fs::read_to_string(dir.path().join(OPERATORS_FILE)).unwrap();
        assert!(!file.contains(&token) && file.contains(&sha256_hex(&token)));
        // Second start: no new admin, the same token still works.
        drop(ops);
        let (ops, written) = Operators::open(dir.path()).unwrap();
        assert!(written.is_none());
        assert!(ops.authenticate(&token).is_some());
    }

    #[test]
    fn revoked_expired_and_unknown_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (ops, _) = Operators::open(dir.path()).unwrap();
        let (token, record) = ops
            .create(
                "alice",
                Role::Editor,
                vec!["finance".into()],
                None,
                false,
                "admin",
            )
            .unwrap();
        assert_eq!(record.token_sha256, None);
        assert_eq!(ops.authenticate(&token).unwrap().namespaces, ["finance"]);
        ops.revoke("alice").unwrap();
        assert!(ops.authenticate(&token).is_none());
        assert!(ops
            .create("alice", Role::Viewer, vec![], None, false, "admin")
            .is_err());
        assert!(ops.authenticate("weft_op_00").is_none());
        assert!(ops.authenticate(&"weft_op_0".repeat(100)).is_none());
        let (short, _) = ops
            .create(
                "bob",
                Role::Viewer,
                vec![],
                Some(Duration::from_millis(1)),
                false,
                "admin",
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(ops.authenticate(&short).is_none());
        assert!(ops.revoke("admin").is_err(), "the last admin stays");
    }

    #[test]
    fn shared_operators_are_one_set_for_every_replica() {
        let state: Arc<dyn SharedState> = Arc::new(weft_store::MemoryShared::default());
        let (one_dir, two_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (one, written) = Operators::open_shared(Arc::clone(&state), one_dir.path()).unwrap();
        let admin = std::fs::read_to_string(written.unwrap()).unwrap();
        let (two, written) = Operators::open_shared(Arc::clone(&state), two_dir.path()).unwrap();
        assert!(written.is_none(), "one first admin for all replicas");
        assert!(two.authenticate(admin.trim()).is_some());
        let (token, _) = one
            .create("fin", Role::Viewer, vec![], None, false, "admin")
            .unwrap();
        assert!(two.authenticate(&token).is_none(), "not reloaded yet");
        assert!(two.reload().unwrap());
        assert!(two.authenticate(&token).is_some());
        two.revoke("fin").unwrap();
        assert!(one.reload().unwrap());
        assert!(one.authenticate(&token).is_none());
        // A replica that had not seen the latest change still cannot overwrite it: names stay
        // unique across replicas.
        assert!(one
            .create("fin", Role::Viewer, vec![], None, false, "admin")
            .is_err());
        let raw =
            serde_json::to_string(&state.read(SHARED_OPERATORS).unwrap().unwrap().bytes).unwrap();
        assert!(!raw.contains(&token));
    }

    #[test]
    fn bad_grants_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (ops, _) = Operators::open(dir.path()).unwrap();
        for (name, role, ns) in [
            ("e", Role::Editor, vec![]),
            ("v", Role::Viewer, vec!["a".to_string()]),
            ("../x", Role::Viewer, vec![]),
            ("n", Role::Editor, vec!["a/b".to_string()]),
        ] {
            assert!(
                matches!(
                    ops.create(name, role, ns, None, false, "t"),
                    Err(OperatorError::Invalid(_))
                ),
                "{name}"
            );
        }
        let too_long = ops.create(
            "t",
            Role::Viewer,
            vec![],
            Some(Duration::from_secs(400 * 86_400)),
            false,
            "t",
        );
        assert!(matches!(too_long, Err(OperatorError::Invalid(_))));
    }
}
