//! weft policy documents.
//!
//! Users describe what they want as Kubernetes-style documents (`apiVersion`, `kind`,
//! `metadata`, `spec`) in YAML or JSON. This crate is the room where they are read and judged:
//!
//! - [`model`]: the document kinds (`Service`, `AuthorizationPolicy`, `RequestAuthentication`,
//!   `TrafficSplit`, `FaultInjection`, `CircuitBreaker`) with camelCase fields that refuse
//!   unknown names;
//! - [`parse`]: multi-document YAML/JSON with a size limit checked before anything is read and
//!   a depth limit checked before the typed deserialisation;
//! - [`validate`]: per-document and whole-set checks that collect *every* error, each naming
//!   its document, field path and reason;
//! - [`secret`]: the secrets a set carries and how the API shows them (`<redacted sha256:…>`);
//! - [`PolicySet`]: the full set of documents one version of the control plane holds.
//!
//! Nothing here does I/O; compiling documents into filter configurations is `weft-compile`.
#![forbid(unsafe_code)]

pub mod error;
pub mod expiry;
pub mod model;
pub mod parse;
pub mod secret;
pub mod set;
pub mod units;
pub mod validate;

pub use error::{FieldError, PolicyError};
pub use model::{DocKey, Document, Kind, Metadata, Spec, API_VERSION};
pub use parse::{parse_documents, Limits};
pub use set::PolicySet;
pub use validate::{labels, load, validate_documents, validate_set, References};
