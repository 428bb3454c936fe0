//! Tag rules: the encoded size limit and the `ep.<name>` endpoint convention.

use std::collections::BTreeMap;

use prost::Message as _;

use super::error::TagsError;
use super::pb;

/// Largest encoded size of a node's tags, in bytes (memberlist's
/// `MetaMaxSize`). The size is that of the protobuf map field as it travels
/// in an `Alive` message: for each tag about `key.len() + value.len() + 6`.
pub const MAX_TAGS_SIZE: usize = 512;

/// Prefix of endpoint tags: `ep.<name>` → `host:port`.
pub const ENDPOINT_PREFIX: &str = "ep.";

/// Encoded size of `tags` as carried on the wire.
pub fn encoded_tags_size(tags: &BTreeMap<String, String>) -> usize {
    pb::Alive {
        tags: tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..Default::default()
    }
    .encoded_len()
}

/// Errors if `tags` are larger than [`MAX_TAGS_SIZE`] once encoded.
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), TagsError> {
    let size = encoded_tags_size(tags);
    if size > MAX_TAGS_SIZE {
        return Err(TagsError::TooLarge {
            size,
            limit: MAX_TAGS_SIZE,
        });
    }
    Ok(())
}

/// The tag key of endpoint `name` (`ep.<name>`).
pub fn endpoint_key(name: &str) -> String {
    format!("{ENDPOINT_PREFIX}{name}")
}

/// The endpoints published in `tags`: `name` → `host:port`, for every
/// `ep.<name>` tag.
pub fn endpoints(tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(ENDPOINT_PREFIX)
                .map(|n| (n.to_string(), v.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limit_and_endpoints() {
        let mut t = BTreeMap::new();
        t.insert(endpoint_key("raft"), "10.1.2.3:7000".to_string());
        t.insert("zone".into(), "a".into());
        assert!(check_tags(&t).is_ok());
        let eps = endpoints(&t);
        assert_eq!(eps.len(), 1);
        assert_eq!(eps["raft"], "10.1.2.3:7000");
        t.insert("blob".into(), "x".repeat(MAX_TAGS_SIZE));
        assert!(matches!(check_tags(&t), Err(TagsError::TooLarge { .. })));
    }
}
