//! SDS over ADS: each sidecar's certificate and the mesh trust bundle as `Secret` resources,
//! and the TLS contexts that refer to them. A sidecar receives the secrets of its own
//! identity only (its group's snapshot, and its group is the identity its join token names).
//!
//! Names follow Istio: `default` is the sidecar's certificate and key, `ROOTCA` the roots it
//! trusts. Envoy swaps a certificate that changes under the same name for new handshakes;
//! connections already open keep theirs.

use envoy_types::pb::envoy::config::core::v3::{
    config_source::ConfigSourceSpecifier, data_source, AggregatedConfigSource, ApiVersion,
    ConfigSource, DataSource,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    secret,
    subject_alt_name_matcher::SanType,
    tls_parameters::TlsProtocol,
    CertificateValidationContext, CommonTlsContext, SdsSecretConfig, Secret, SubjectAltNameMatcher,
    TlsCertificate, TlsParameters,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use envoy_types::util::pack_any;
use serde_json::{json, Value};

use crate::resource::Resource;

pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// The sidecar's own certificate chain and key.
pub const CERT_SECRET: &str = "default";
/// The trust bundle: every root a sidecar accepts a peer from.
pub const ROOT_SECRET: &str = "ROOTCA";

/// What SDS serves one identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentitySecrets {
    pub spiffe_id: String,
    pub cert_chain_pem: String,
    pub key_pem: String,
    /// Concatenated PEM roots.
    pub trust_bundle_pem: String,
}

fn inline(text: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineString(text.to_string())),
        ..Default::default()
    })
}

/// The two `Secret` resources of one identity.
pub fn secret_resources(secrets: &IdentitySecrets) -> Vec<Resource> {
    let cert = Secret {
        name: CERT_SECRET.into(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(&secrets.cert_chain_pem),
            private_key: inline(&secrets.key_pem),
            ..Default::default()
        })),
    };
    let roots = Secret {
        name: ROOT_SECRET.into(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: inline(&secrets.trust_bundle_pem),
                ..Default::default()
            },
        )),
    };
    vec![
        Resource::new(CERT_SECRET, pack_any(cert)),
        Resource::new(ROOT_SECRET, pack_any(roots)),
    ]
}

fn from_ads(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.into(),
        sds_config: Some(ConfigSource {
            config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
            resource_api_version: ApiVersion::V3 as i32,
            ..Default::default()
        }),
    }
}

/// TLS 1.3 only. Envoy's client default maximum is TLS 1.2, so both bounds are explicit.
pub fn tls13() -> TlsParameters {
    TlsParameters {
        tls_minimum_protocol_version: TlsProtocol::TlSv13 as i32,
        tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
        ..Default::default()
    }
}

/// Only a peer presenting exactly `spiffe_id` (URI SAN).
pub fn spiffe_san(spiffe_id: &str) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(spiffe_id.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A mesh cluster's client context with SDS: present `default`, trust `ROOTCA`, accept only
/// `peer_spiffe_id`.
pub fn upstream_common_context(peer_spiffe_id: &str) -> CommonTlsContext {
    CommonTlsContext {
        tls_params: Some(tls13()),
        tls_certificate_sds_secret_configs: vec![from_ads(CERT_SECRET)],
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: vec![spiffe_san(peer_spiffe_id)],
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(from_ads(ROOT_SECRET)),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// The inbound listener's context with SDS (bootstrap JSON): TLS 1.3, present `default`,
/// require a client certificate chained to `ROOTCA`. Which caller may do what is authz's
/// business (it reads the verified `connection.uri_san_peer_certificate`).
pub fn inbound_transport_socket() -> Value {
    let ads = json!({"ads": {}, "resource_api_version": "V3"});
    inbound_mtls(json!({
        "tls_certificate_sds_secret_configs": [{"name": CERT_SECRET, "sds_config": ads}],
        "validation_context_sds_secret_config": {"name": ROOT_SECRET, "sds_config": ads},
    }))
}

/// A DownstreamTlsContext socket (bootstrap JSON): TLS 1.3 only, client certificate
/// required, certificates and validation from `sources` (an object merged into
/// `common_tls_context`).
pub(crate) fn inbound_mtls(sources: Value) -> Value {
    let mut common = json!({
        "tls_params": {
            "tls_minimum_protocol_version": "TLSv1_3",
            "tls_maximum_protocol_version": "TLSv1_3",
        },
    });
    if let (Some(common), Value::Object(sources)) = (common.as_object_mut(), sources) {
        common.extend(sources);
    }
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": common,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn secrets_are_named_like_istio_and_inline_the_pem() {
        let secrets = IdentitySecrets {
            spiffe_id: "spiffe://cluster.local/ns/d/sa/s".into(),
            cert_chain_pem: "CERT".into(),
            key_pem: "KEY".into(),
            trust_bundle_pem: "ROOTS".into(),
        };
        let resources = secret_resources(&secrets);
        assert_eq!(resources[0].name, "default");
        assert_eq!(resources[0].body.type_url, SECRET_TYPE);
        let cert = Secret::decode(resources[0].body.value.as_slice()).unwrap();
        let Some(secret::Type::TlsCertificate(tls)) = cert.r#type else {
            panic!("not a certificate")
        };
        assert_eq!(tls.private_key, inline("KEY"));
        let roots = Secret::decode(resources[1].body.value.as_slice()).unwrap();
        assert_eq!(roots.name, "ROOTCA");
        let Some(secret::Type::ValidationContext(v)) = roots.r#type else {
            panic!("not a validation context")
        };
        assert_eq!(v.trusted_ca, inline("ROOTS"));
    }
}
