//! Policy files without a server: read, validated and compiled as the server would
//! (`weft validate --offline`, `weft check -f`).

use crate::client::Failure;
use crate::Exit;
use std::io::Read;
use std::path::Path;

/// A file's bytes; `-` reads standard input.
pub(crate) fn read_input(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut buf).map(drop)
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map(drop)
    };
    read.map_err(|e| Failure::new(Exit::Usage, format!("cannot read {}: {e}", path.display())))?;
    Ok(buf)
}

fn invalid(details: Vec<weft_policy::FieldError>) -> Failure {
    Failure {
        exit: Exit::Invalid,
        message: "invalid documents".into(),
        details,
    }
}

/// The documents of one file, each validated on its own (no server).
pub(crate) fn load_offline(input: &[u8]) -> Result<Vec<weft_policy::Document>, Failure> {
    let mut docs =
        weft_policy::load(input, &weft_policy::Limits::default()).map_err(|e| match e {
            weft_policy::PolicyError::TooLarge { .. } => Failure::new(Exit::Invalid, e.to_string()),
            weft_policy::PolicyError::Invalid(d) => invalid(d),
        })?;
    // As an apply would: a relative `expiry` becomes a time from now.
    weft_policy::expiry::resolve(&mut docs, weft_policy::expiry::now_unix_ms());
    Ok(docs)
}

/// The documents as one set: the references among them checked, compiled, and the
/// compilation parsed by the filters (no server).
pub(crate) fn offline_set(
    docs: Vec<weft_policy::Document>,
) -> Result<weft_policy::PolicySet, Failure> {
    let labels = weft_policy::labels(&docs);
    let set = weft_policy::PolicySet::from_documents(docs);
    let errors = weft_policy::validate_set(&set, &labels, weft_policy::References::Lenient);
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let errors = weft_compile::compile(&set).map_or_else(|e| e, |c| weft_compile::check(&c));
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    Ok(set)
}
