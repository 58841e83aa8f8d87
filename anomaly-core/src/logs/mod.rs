//! Log lines: template mining ([`Drain`]) and the online analysis of each line against the system's own history
//! ([`LogDetector`]: template novelty and rarity, parameters, severity, bursts and silences).

mod detector;
mod drain;
mod line;
mod mask;

pub use detector::{LogDetector, LogDetectorParams, LogVerdict, LogWeights, TemplateSummary};
pub use drain::{
    Drain, DrainParams, LONG, LineMatch, Template, TemplateChange, TemplateId, WILDCARD,
};
pub use line::{Severity, time_in_line};
pub use mask::Masks;

/// Maps with integer keys written as `[key, value]` pairs: a snapshot's model is an internally tagged enum, whose
/// buffered map keys would otherwise only read back as strings.
mod pairs {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &HashMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, K, V, D>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}
