//! YAML output in the style of Go's sigs.k8s.io/yaml: block collections, compact sequences,
//! long strings kept on one line, YAML 1.1-ambiguous strings (timestamps, `yes`) quoted.

use serde::Serialize;

pub fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
    let mut opts = serde_saphyr::SerializerOptions::default();
    opts.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(value, opts).map_err(|e| e.to_string())
}
