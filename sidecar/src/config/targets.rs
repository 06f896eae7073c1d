//! The aggregators a sidecar reports to: the file's `aggregator` key read as one address or a
//! list of them, and the checks on the list (a default, each address, no address twice).

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::values::check_http_url;
use super::{invalid, ConfigError, DEFAULT_AGGREGATOR};

/// `aggregator = "http://a:50051"` or `aggregator = ["http://a:50051", "http://b:50051"]`: a
/// single string stays valid so that configs written for one aggregator keep working.
pub(super) fn one_or_many<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an aggregator address or a list of them")
        }

        fn visit_str<E: de::Error>(self, address: &str) -> Result<Self::Value, E> {
            Ok(vec![address.to_owned()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut addresses = Vec::new();
            while let Some(address) = seq.next_element::<String>()? {
                addresses.push(address);
            }
            Ok(addresses)
        }
    }

    deserializer.deserialize_any(OneOrMany).map(Some)
}

/// The validated list, in the order given: the default when the setting is absent; each an
/// http(s) URL; none twice (compared as parsed, so `http://a:1` and `http://a:1/` are the same
/// one, which would otherwise get every snapshot twice over two streams).
pub(super) fn check_aggregators(given: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let Some(given) = given else {
        return Ok(vec![DEFAULT_AGGREGATOR.to_owned()]);
    };
    if given.is_empty() {
        // `aggregator = []` is more likely a mistake than a wish for the default.
        return Err(invalid(
            "aggregator",
            "give at least one aggregator address",
        ));
    }
    let mut seen: Vec<url::Url> = Vec::with_capacity(given.len());
    for address in &given {
        let url = check_http_url("aggregator", address)?;
        if seen.contains(&url) {
            return Err(invalid(
                "aggregator",
                format!("{address:?} is listed twice; give each aggregator once"),
            ));
        }
        seen.push(url);
    }
    Ok(given)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct File {
        #[serde(default, deserialize_with = "one_or_many")]
        aggregator: Option<Vec<String>>,
    }

    fn read(text: &str) -> Result<Option<Vec<String>>, toml::de::Error> {
        toml::from_str::<File>(text).map(|f| f.aggregator)
    }

    #[test]
    fn a_string_or_a_list() {
        assert_eq!(read("").unwrap(), None);
        assert_eq!(
            read("aggregator = \"http://a:1\"").unwrap(),
            Some(vec!["http://a:1".to_owned()])
        );
        assert_eq!(
            read("aggregator = [\"http://a:1\", \"http://b:1\"]").unwrap(),
            Some(vec!["http://a:1".to_owned(), "http://b:1".to_owned()])
        );
        let err = read("aggregator = 5").unwrap_err().to_string();
        assert!(
            err.contains("an aggregator address or a list of them"),
            "{err}"
        );
    }

    #[test]
    fn the_default_when_absent_and_no_address_twice() {
        assert_eq!(check_aggregators(None).unwrap(), [DEFAULT_AGGREGATOR]);
        let err = check_aggregators(Some(vec![])).unwrap_err().to_string();
        assert!(err.contains("`aggregator`"), "{err}");
        let two = vec!["http://a:1".to_owned(), "http://b:1".to_owned()];
        assert_eq!(check_aggregators(Some(two.clone())).unwrap(), two);
        let err = check_aggregators(Some(vec!["http://a:1".into(), "http://a:1/".into()]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`aggregator`") && err.contains("listed twice"),
            "{err}"
        );
        let err = check_aggregators(Some(vec!["http://a:1".into(), "a:2".into()]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`aggregator`"), "{err}");
    }
}
