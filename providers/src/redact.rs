//! Serializers that print a secret as `***`: the configuration is printable (`oplata config`,
//! `Debug`) without a credential in it.

use secrecy::SecretString;
use serde::Serializer;

pub fn redacted<S: Serializer>(_: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("***")
}

pub fn redacted_list<S: Serializer>(
    secrets: &[SecretString],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(secrets.len()))?;
    for _ in secrets {
        seq.serialize_element("***")?;
    }
    seq.end()
}

pub fn redacted_option<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str("***"),
        None => serializer.serialize_none(),
    }
}

pub fn redacted_map<S: Serializer>(
    keys: &std::collections::BTreeMap<String, SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(keys.len()))?;
    for id in keys.keys() {
        map.serialize_entry(id, "***")?;
    }
    map.end()
}
