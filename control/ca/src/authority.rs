// Over 400 lines: the CA is one state machine (roots, rotation, trust bundle, issuing SVIDs, server and operator certificates).
//! The mesh CA: self-signed ECDSA P-256 roots kept in the data directory (key files mode
//! 0600 in a 0700 directory), SVIDs for `spiffe://<trust-domain>/ns/<ns>/sa/<service>`, and
//! planned root rotation: a new root joins the trust bundle at once but signs only after a
//! propagation delay (every sidecar trusts it before anyone presents it), and the old root
//! stays in the bundle until the last SVID it signed has expired.
//!
//! (Over 400 lines: the root lifecycle, issuance and the rotation rules share one `Ca` state.)

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use time::OffsetDateTime;

use crate::files::{private_dir, random, unix_ms, write_atomic};
use crate::kek::Kek;
use crate::root::{Root, RootInfo};
use crate::shared_roots::SharedRoots;
use crate::CaError;

/// Certificates start this far in the past: clocks of sidecars lag a little.
const BACKDATE: Duration = Duration::from_secs(60);
const ROOTS_FILE: &str = "roots.json";
/// The longest SVID lifetime: a leaked key stays usable this long at most.
pub const MAX_SVID_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest root lifetime (X.509 dates stay far inside their range).
pub const MAX_ROOT_TTL: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
/// The longest root propagation delay after `weft ca rotate`.
pub const MAX_ROOT_PROPAGATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How the CA issues.
#[derive(Clone, Debug)]
pub struct CaSettings {
    /// `cluster.local` by default (weft-compile's trust domain).
    pub trust_domain: String,
    /// Lifetime of an SVID (24 h by default).
    pub svid_ttl: Duration,
    /// Lifetime of a root (10 years).
    pub root_ttl: Duration,
    /// After `rotate_root`, how long the new root is only trusted before it signs.
    pub root_propagation: Duration,
}

impl Default for CaSettings {
    fn default() -> Self {
        Self {
            trust_domain: "cluster.local".into(),
            svid_ttl: Duration::from_secs(24 * 3600),
            root_ttl: Duration::from_secs(10 * 365 * 24 * 3600),
            root_propagation: Duration::from_secs(10),
        }
    }
}

// === impl CaSettings ===

impl CaSettings {
    /// Every duration within its bound, so no time computed from them can overflow.
    pub fn check(&self) -> Result<(), CaError> {
        let bounded = |what, value: Duration, min: Duration, max: Duration| {
            if value < min || value > max {
                return Err(CaError::OutOfRange {
                    what,
                    seconds: value.as_secs(),
                    max: max.as_secs(),
                });
            }
            Ok(())
        };
        let second = Duration::from_secs(1);
        bounded("svid_ttl", self.svid_ttl, second, MAX_SVID_TTL)?;
        bounded("root_ttl", self.root_ttl, self.svid_ttl, MAX_ROOT_TTL)?;
        bounded(
            "root_propagation",
            self.root_propagation,
            Duration::ZERO,
            MAX_ROOT_PROPAGATION,
        )
    }
}

/// An issued certificate with its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Svid {
    pub spiffe_id: String,
    /// PEM of the leaf (roots sign leaves directly).
    pub cert_chain_pem: String,
    /// PKCS#8 PEM of the leaf's key.
    pub key_pem: String,
    /// Hex serial number, as Envoy's admin `/certs` shows it.
    pub serial: String,
    pub not_before_ms: u64,
    pub not_after_ms: u64,
    /// The root that signed it.
    pub root_generation: u64,
}

/// Where the roots are kept.
enum Backend {
    /// Files in a private directory (one control plane).
    Dir(PathBuf),
    /// One document of shared state, keys sealed (replicas).
    Shared(SharedRoots),
}

/// The CA. All methods take `&self`; the roots sit behind a mutex.
pub struct Ca {
    backend: Backend,
    settings: CaSettings,
    roots: Mutex<Vec<Root>>,
}

// === impl Ca ===

impl Ca {
    /// Opens the CA kept in `dir`, creating its first root when there is none.
    pub fn open(dir: &Path, settings: CaSettings) -> Result<Self, CaError> {
        settings.check()?;
        private_dir(dir).map_err(|e| CaError::io(dir, e))?;
        let infos: Vec<RootInfo> = match std::fs::read(dir.join(ROOTS_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| CaError::Corrupt {
                path: dir.join(ROOTS_FILE),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(CaError::io(&dir.join(ROOTS_FILE), e)),
        };
        let mut roots = Vec::with_capacity(infos.len());
        for info in infos {
            roots.push(load_root(dir, info)?);
        }
        let ca = Self {
            backend: Backend::Dir(dir.to_path_buf()),
            settings,
            roots: Mutex::new(roots),
        };
        if ca.lock().is_empty() {
            let now = unix_ms(SystemTime::now());
            ca.add_root(now)?;
            tracing::info!(dir = %dir.display(), "created the mesh root CA");
        }
        Ok(ca)
    }

    /// Opens the CA kept in shared state as document `name` (replicas over etcd), its root
    /// keys sealed with `kek`; the first replica to start creates the first root (the others
    /// read it: creation is a compare-and-swap on the empty document).
    pub fn open_shared(
        state: Arc<dyn weft_store::SharedState>,
        name: &str,
        kek: Arc<Kek>,
        settings: CaSettings,
    ) -> Result<Self, CaError> {
        settings.check()?;
        let ca = Self {
            backend: Backend::Shared(SharedRoots::new(state, name, kek)),
            settings,
            roots: Mutex::new(Vec::new()),
        };
        let now = unix_ms(SystemTime::now());
        if ca.add_shared_root(now, true)?.is_some() {
            tracing::info!(document = %name, "created the root CA in shared state");
        }
        Ok(ca)
    }

    /// Reads the roots again when another replica changed them (a rotation); whether they
    /// changed. Nothing to do for roots kept in files (this process is their only writer).
    pub fn reload(&self) -> Result<bool, CaError> {
        let Backend::Shared(shared) = &self.backend else {
            return Ok(false);
        };
        let Some((roots, revision)) = shared.read(shared.revision.load(Ordering::Relaxed))? else {
            return Ok(false);
        };
        let mut held = self.lock();
        *held = roots;
        shared.revision.store(revision, Ordering::Relaxed);
        Ok(true)
    }

    pub fn settings(&self) -> &CaSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Root>> {
        self.roots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service>`.
    pub fn spiffe_id(&self, namespace: &str, service: &str) -> String {
        format!(
            "spiffe://{}/ns/{namespace}/sa/{service}",
            self.settings.trust_domain
        )
    }

    /// Issues an SVID for `namespace/service`, signed by the current signing root. The
    /// control plane's namespace ([`crate::RESERVED_NAMESPACE`]) is refused: only
    /// [`Ca::issue_server`] makes certificates for it.
    pub fn issue(&self, namespace: &str, service: &str) -> Result<Svid, CaError> {
        check_not_reserved(namespace)?;
        self.issue_with(namespace, service, &[], signing_root)
    }

    /// A client certificate for operator `name` of the REST API:
    /// `spiffe://<trust-domain>/ns/weft-system/operator/<name>`, client authentication only.
    /// Issue these from a CA of their own (`<data-dir>/operator-ca`), never from the mesh CA:
    /// no sidecar trusts that root, so an operator certificate can never pass for a workload.
    pub fn issue_operator(&self, name: &str) -> Result<Svid, CaError> {
        check_name("operator", name)?;
        let spiffe_id = format!(
            "spiffe://{}/ns/{}/operator/{name}",
            self.settings.trust_domain,
            crate::RESERVED_NAMESPACE
        );
        self.sign(
            spiffe_id,
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
            signing_root,
        )
    }

    /// A server certificate for the control plane itself (the xDS listener): the SPIFFE id of
    /// `namespace/service` plus DNS names and IP addresses (`names`), signed by the OLDEST root
    /// still in the trust bundle, so a sidecar that pinned the bundle before a rotation keeps
    /// verifying it for as long as its roots are trusted at all.
    pub fn issue_server(
        &self,
        namespace: &str,
        service: &str,
        names: &[String],
    ) -> Result<Svid, CaError> {
        let mut sans = Vec::with_capacity(names.len());
        for name in names {
            sans.push(match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => {
                    let bad = || CaError::BadServerName(name.clone());
                    let dns = !name.is_empty()
                        && name.len() <= 253
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
                    if !dns {
                        return Err(bad());
                    }
                    SanType::DnsName(name.clone().try_into().map_err(|_| bad())?)
                }
            });
        }
        let grace = self.trust_grace();
        self.issue_with(namespace, service, &sans, |roots, now| {
            roots.iter().find(|r| trusted(&r.info, now, grace))
        })
    }

    fn issue_with(
        &self,
        namespace: &str,
        service: &str,
        extra_sans: &[SanType],
        pick: impl Fn(&[Root], u64) -> Option<&Root>,
    ) -> Result<Svid, CaError> {
        check_name("namespace", namespace)?;
        check_name("service", service)?;
        let usages = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(
            self.spiffe_id(namespace, service),
            extra_sans,
            &usages,
            pick,
        )
    }

    fn sign(
        &self,
        spiffe_id: String,
        extra_sans: &[SanType],
        usages: &[ExtendedKeyUsagePurpose],
        pick: impl Fn(&[Root], u64) -> Option<&Root>,
    ) -> Result<Svid, CaError> {
        let key = KeyPair::generate().map_err(CaError::rcgen)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(
            spiffe_id.clone().try_into().map_err(CaError::rcgen)?,
        )];
        params.subject_alt_names.extend_from_slice(extra_sans);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = usages.to_vec();
        params.use_authority_key_identifier_extension = true;
        let serial = serial_number()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = SystemTime::now();
        let (not_before, not_after) = validity(now, self.settings.svid_ttl)?;
        params.not_before = not_before.1;
        params.not_after = not_after.1;
        let (not_before, not_after) = (not_before.0, not_after.0);
        let roots = self.lock();
        let root = pick(&roots, unix_ms(now)).ok_or(CaError::NoRoot)?;
        let cert = params
            .signed_by(&key, &root.issuer)
            .map_err(CaError::rcgen)?;
        Ok(Svid {
            spiffe_id,
            cert_chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: hex(&serial),
            not_before_ms: unix_ms(not_before),
            not_after_ms: unix_ms(not_after),
            root_generation: root.info.generation,
        })
    }

    /// The PEM roots a sidecar must trust now: the signing root, a newer one still
    /// propagating, and retired ones until the last SVID they signed has expired.
    pub fn trust_bundle(&self) -> String {
        let now = unix_ms(SystemTime::now());
        let grace = self.trust_grace();
        self.lock()
            .iter()
            .filter(|r| trusted(&r.info, now, grace))
            .map(|r| r.cert_pem.as_str())
            .collect()
    }

    /// The generation of the oldest root still in the trust bundle (it signs
    /// [`Ca::issue_server`] certificates).
    pub fn oldest_trusted_generation(&self) -> u64 {
        let now = unix_ms(SystemTime::now());
        let grace = self.trust_grace();
        self.lock()
            .iter()
            .find(|r| trusted(&r.info, now, grace))
            .map_or(0, |r| r.info.generation)
    }

    /// How long a retired root stays trusted: the last SVID it signed must expire first.
    fn trust_grace(&self) -> u64 {
        millis(self.settings.svid_ttl.saturating_add(BACKDATE))
    }

    /// The generation of the root that signs now.
    pub fn signing_generation(&self) -> u64 {
        let now = unix_ms(SystemTime::now());
        signing_root(&self.lock(), now).map_or(0, |r| r.info.generation)
    }

    pub fn roots(&self) -> Vec<RootInfo> {
        self.lock().iter().map(|r| r.info.clone()).collect()
    }

    /// Adds a new root: trusted at once, signing after `root_propagation`; the roots before it
    /// retire then.
    pub fn rotate_root(&self) -> Result<RootInfo, CaError> {
        let now = unix_ms(SystemTime::now());
        let active_from = now.saturating_add(millis(self.settings.root_propagation));
        self.add_root(active_from)
    }

    fn add_root(&self, active_from_ms: u64) -> Result<RootInfo, CaError> {
        if let Backend::Shared(_) = &self.backend {
            return self
                .add_shared_root(active_from_ms, false)?
                .ok_or(CaError::NoRoot);
        }
        let Backend::Dir(dir) = &self.backend else {
            return Err(CaError::NoRoot);
        };
        let mut roots = self.lock();
        let generation = next_generation(&roots);
        let (root, key_pem) = self.make_root(generation, active_from_ms, None)?;
        let info = root.info.clone();
        // Key first (0600), then the certificate, then the index naming them.
        let (cert_path, key_path) = root_paths(dir, generation);
        write_atomic(&key_path, key_pem.as_bytes(), 0o600)
            .map_err(|e| CaError::io(&key_path, e))?;
        write_atomic(&cert_path, root.cert_pem.as_bytes(), 0o600)
            .map_err(|e| CaError::io(&cert_path, e))?;
        let infos = retired_infos(&roots, &info);
        let index = dir.join(ROOTS_FILE);
        let json = serde_json::to_vec_pretty(&infos).map_err(|e| CaError::Corrupt {
            path: index.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&index, &json, 0o600).map_err(|e| CaError::io(&index, e))?;
        for (root, info) in roots.iter_mut().zip(&infos) {
            root.info = info.clone();
        }
        roots.push(root);
        Ok(info)
    }

    /// Adds a root to the shared document by compare-and-swap on the latest one read
    /// (another replica's rotation in between: read again, try again). `only_if_empty`: the
    /// first root, unless some replica made it first (`None` then).
    fn add_shared_root(
        &self,
        active_from_ms: u64,
        only_if_empty: bool,
    ) -> Result<Option<RootInfo>, CaError> {
        let Backend::Shared(shared) = &self.backend else {
            return Err(CaError::NoRoot);
        };
        for _ in 0..5 {
            self.reload()?;
            let mut roots = self.lock();
            if only_if_empty && !roots.is_empty() {
                return Ok(None);
            }
            let generation = next_generation(&roots);
            let (root, _) = self.make_root(generation, active_from_ms, Some(shared))?;
            let info = root.info.clone();
            let infos = retired_infos(&roots, &info);
            let expected = shared.revision.load(Ordering::Relaxed);
            let Some(revision) = shared.write(&roots, &infos, &root, expected)? else {
                continue;
            };
            for (held, info) in roots.iter_mut().zip(&infos) {
                held.info = info.clone();
            }
            roots.push(root);
            shared.revision.store(revision, Ordering::Relaxed);
            return Ok(Some(info));
        }
        Err(CaError::Contended(shared.describe()))
    }

    /// A new self-signed root (and its key's PEM), its key sealed for `shared`.
    fn make_root(
        &self,
        generation: u64,
        active_from_ms: u64,
        shared: Option<&SharedRoots>,
    ) -> Result<(Root, String), CaError> {
        let key = KeyPair::generate().map_err(CaError::rcgen)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "weft");
        params.distinguished_name.push(
            DnType::CommonName,
            format!("weft mesh CA {generation} ({})", self.settings.trust_domain),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let serial = serial_number()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = SystemTime::now();
        let (not_before, not_after) = validity(now, self.settings.root_ttl)?;
        params.not_before = not_before.1;
        params.not_after = not_after.1;
        let not_after = not_after.0;
        let cert = params.self_signed(&key).map_err(CaError::rcgen)?;
        let info = RootInfo {
            generation,
            created_ms: unix_ms(now),
            not_after_ms: unix_ms(not_after),
            active_from_ms,
            retired_at_ms: None,
            serial: hex(&serial),
        };
        let key_pem = key.serialize_pem();
        let sealed = match shared {
            Some(shared) => Some(shared.seal(generation, &key_pem)?),
            None => None,
        };
        let root = Root {
            info,
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            sealed,
        };
        Ok((root, key_pem))
    }
}

fn next_generation(roots: &[Root]) -> u64 {
    roots
        .last()
        .map_or(1, |r| r.info.generation.saturating_add(1))
}

/// Every root's info once `new` is added: the roots not yet retired retire when it signs.
fn retired_infos(roots: &[Root], new: &RootInfo) -> Vec<RootInfo> {
    let mut infos: Vec<RootInfo> = roots.iter().map(|r| r.info.clone()).collect();
    for older in infos.iter_mut().filter(|r| r.retired_at_ms.is_none()) {
        older.retired_at_ms = Some(new.active_from_ms);
    }
    infos.push(new.clone());
    infos
}

fn root_paths(dir: &Path, generation: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("root-{generation}.pem")),
        dir.join(format!("root-{generation}.key.pem")),
    )
}

fn load_root(dir: &Path, info: RootInfo) -> Result<Root, CaError> {
    let (cert_path, key_path) = root_paths(dir, info.generation);
    let cert_pem = std::fs::read_to_string(&cert_path).map_err(|e| CaError::io(&cert_path, e))?;
    let key_pem = std::fs::read_to_string(&key_path).map_err(|e| CaError::io(&key_path, e))?;
    let corrupt = |path: &Path, e: rcgen::Error| CaError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let key = KeyPair::from_pem(&key_pem).map_err(|e| corrupt(&key_path, e))?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| corrupt(&cert_path, e))?;
    Ok(Root {
        info,
        cert_pem,
        issuer,
        sealed: None,
    })
}

/// Not expired, and not retired longer than `grace` ago.
fn trusted(info: &RootInfo, now_ms: u64, grace_ms: u64) -> bool {
    info.not_after_ms > now_ms
        && info
            .retired_at_ms
            .is_none_or(|at| now_ms < at.saturating_add(grace_ms))
}

/// The newest root whose signing time has come.
fn signing_root(roots: &[Root], now_ms: u64) -> Option<&Root> {
    roots
        .iter()
        .rev()
        .find(|r| r.info.active_from_ms <= now_ms)
        .or_else(|| roots.first())
}

/// `[now - BACKDATE, now + lifetime]`, as system times and X.509 dates; checked, so an
/// unrepresentable time is an error, never a panic.
type Moment = (SystemTime, OffsetDateTime);

fn validity(now: SystemTime, lifetime: Duration) -> Result<(Moment, Moment), CaError> {
    let date = |at: SystemTime| -> Result<Moment, CaError> {
        let unix = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| CaError::Time("certificate validity"))?;
        let seconds =
            i64::try_from(unix.as_secs()).map_err(|_| CaError::Time("certificate validity"))?;
        let date = OffsetDateTime::from_unix_timestamp(seconds)
            .map_err(|_| CaError::Time("certificate validity"))?;
        Ok((at, date))
    };
    let not_before = now
        .checked_sub(BACKDATE)
        .ok_or(CaError::Time("certificate validity"))?;
    let not_after = now
        .checked_add(lifetime)
        .ok_or(CaError::Time("certificate validity"))?;
    Ok((date(not_before)?, date(not_after)?))
}

/// Milliseconds of `d`, saturating at `u64::MAX`.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Refuses the control plane's own namespace ([`crate::RESERVED_NAMESPACE`]).
pub(crate) fn check_not_reserved(namespace: &str) -> Result<(), CaError> {
    if namespace.eq_ignore_ascii_case(crate::RESERVED_NAMESPACE) {
        return Err(CaError::Reserved {
            what: "namespace",
            value: namespace.to_string(),
        });
    }
    Ok(())
}

/// SPIFFE path segments: no `/`, nothing empty, a conservative character set.
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), CaError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(CaError::BadName {
            what,
            value: value.to_string(),
        })
    }
}

/// 16 random bytes, positive as an ASN.1 integer.
fn serial_number() -> Result<[u8; 16], CaError> {
    let mut serial = random::<16>()?;
    // Positive, and no leading zero byte, so the hex matches what Envoy's `/certs` prints.
    serial[0] = (serial[0] & 0x6f) | 0x10;
    Ok(serial)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
