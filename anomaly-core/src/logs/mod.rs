//! Log lines: template mining ([`Drain`]) and the online analysis of each line against the system's own history
//! ([`LogAnalyzer`]: template novelty and rarity, parameters, severity, bursts and silences).

mod analyzer;
mod drain;
mod line;
mod mask;

pub use analyzer::{LogAnalyzer, LogAnalyzerParams, LogVerdict, LogWeights, TemplateSummary};
pub use drain::{Drain, DrainParams, LineMatch, Template, TemplateChange, TemplateId, WILDCARD};
pub use line::{Severity, time_in_line};
pub use mask::Masks;
