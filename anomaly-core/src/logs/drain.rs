//! Drain: online log template mining with a fixed-depth parse tree (He et al., ICWS 2017), with the semantics of
//! Python's Drain3 (0.9): the same tree, similarity, template merging and least-recently-used template cap, so the
//! same lines fall into the same groups.
//!
//! A line's tokens route through the tree by their count, then by their first `depth - 2` tokens (a token with a
//! digit, or one past `max_children`, goes to the wildcard branch); the leaf's templates of that length are
//! compared token by token, and the most similar one at or above `similarity` absorbs the line (differing
//! positions become `<*>`), or the line starts a new template.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::mask::{Masks, tokenize};
use crate::error::{Error, Result};

/// The wildcard token of a template.
pub const WILDCARD: &str = "<*>";

/// The mask of a token longer than `max_token_bytes`.
pub const LONG: &str = "<LONG>";

/// A template's identifier: 1, 2, … in order of creation, never reused.
pub type TemplateId = u64;

/// Drain's settings. The defaults are Drain3's (depth 4, similarity 0.4, 100 children, numeric tokens to the
/// wildcard branch) with every [`Masks`] on and at most 10,000 templates; [`DrainParams::drain3`] is Drain3's
/// default exactly (no masks, no template cap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DrainParams {
    /// Depth of the parse tree, at least 3: the tree routes on the first `depth - 2` tokens.
    pub depth: usize,
    /// Share of equal tokens (wildcards not counted) a line needs to join a template, in `0..=1`.
    pub similarity: f64,
    /// Children per tree node before new tokens go to the wildcard branch, at least 2.
    pub max_children: usize,
    /// Templates kept; beyond it the least recently matched is forgotten. `None`: unbounded.
    pub max_templates: Option<usize>,
    /// Tokens per line; the last token keeps the rest of a longer line.
    pub max_tokens: usize,
    /// Longest token kept as it is; a longer one is masked as `<LONG>` (its value stays a parameter), so a
    /// template holds at most `max_tokens × max_token_bytes` bytes of tokens.
    pub max_token_bytes: usize,
    /// Tokens with a digit route to the wildcard branch (Drain3's `parametrize_numeric_tokens`).
    pub parametrize_numeric_tokens: bool,
    /// Strings treated as spaces when splitting a line.
    pub extra_delimiters: Vec<String>,
    /// Masks applied to each token before matching.
    pub masks: Masks,
}

impl Default for DrainParams {
    fn default() -> Self {
        DrainParams {
            depth: 4,
            similarity: 0.4,
            max_children: 100,
            max_templates: Some(10_000),
            max_tokens: 128,
            max_token_bytes: 64,
            parametrize_numeric_tokens: true,
            extra_delimiters: Vec::new(),
            masks: Masks::default(),
        }
    }
}

impl DrainParams {
    /// Drain3 0.9's `TemplateMiner()` defaults: no masks, no template cap, tokens of any length.
    pub fn drain3() -> Self {
        DrainParams {
            max_templates: None,
            max_tokens: 65_536,
            max_token_bytes: usize::MAX,
            masks: Masks::none(),
            ..DrainParams::default()
        }
    }

    fn check(&self) -> Result<()> {
        if self.depth < 3 || self.depth > 16 {
            return Err(Error::invalid(
                "depth",
                format!("must be in 3..=16, got {}", self.depth),
            ));
        }
        if !(0.0..=1.0).contains(&self.similarity) {
            return Err(Error::invalid(
                "similarity",
                format!("must be in 0..=1, got {}", self.similarity),
            ));
        }
        if self.max_children < 2 {
            return Err(Error::invalid(
                "max_children",
                format!("must be at least 2, got {}", self.max_children),
            ));
        }
        if self.max_templates == Some(0) {
            return Err(Error::invalid("max_templates", "must be at least 1"));
        }
        if self.max_token_bytes < 8 {
            return Err(Error::invalid(
                "max_token_bytes",
                format!("must be at least 8, got {}", self.max_token_bytes),
            ));
        }
        if !(1..=65_536).contains(&self.max_tokens) {
            return Err(Error::invalid(
                "max_tokens",
                format!("must be in 1..=65536, got {}", self.max_tokens),
            ));
        }
        Ok(())
    }
}

/// One template: its tokens (`<*>` where lines differ, masks such as `<NUM>` where they were masked) and the
/// number of lines it absorbed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    id: TemplateId,
    tokens: Vec<Box<str>>,
    size: u64,
    /// Recency under the template cap.
    #[serde(default)]
    last_used: u64,
    /// The tree node whose list holds it.
    #[serde(default)]
    leaf: u32,
}

impl Template {
    /// Its identifier.
    pub fn id(&self) -> TemplateId {
        self.id
    }

    /// Its tokens.
    pub fn tokens(&self) -> impl ExactSizeIterator<Item = &str> {
        self.tokens.iter().map(|t| &**t)
    }

    /// Its text: the tokens joined by spaces.
    pub fn text(&self) -> String {
        self.tokens.join(" ")
    }

    /// Lines it absorbed, the first included.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// What [`Drain::add`] did with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateChange {
    /// The line started a new template.
    Created,
    /// The line joined a template and turned some of its tokens into wildcards.
    Generalised,
    /// The line joined a template unchanged.
    None,
}

/// A line matched to its template, with the line's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LineMatch<'a> {
    /// The template's identifier.
    pub template: TemplateId,
    /// What happened to the template.
    pub change: TemplateChange,
    /// The line's variable parts: `(slot, value)`, where the slot is the token position times 8 plus the
    /// index of a masked value within the token (0 for a whole wildcard token).
    pub parameters: Vec<(u32, &'a str)>,
    /// A template forgotten to make room for a new one under `max_templates`.
    pub forgotten: Option<TemplateId>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Node {
    children: HashMap<Box<str>, u32>,
    templates: Vec<TemplateId>,
}

/// A line split into masked tokens, with the masked-out values per token.
struct Tokens<'a> {
    masked: Vec<std::borrow::Cow<'a, str>>,
    raw: Vec<&'a str>,
    values: Vec<&'a str>,
    /// Per token, the range of its masked-out values in `values`.
    spans: Vec<(u32, u32)>,
}

/// The template miner: a Drain parse tree and its templates. Serialisable; a restored miner is checked first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DrainState")]
pub struct Drain {
    params: DrainParams,
    /// Token count → first-level node.
    #[serde(with = "super::pairs")]
    lengths: HashMap<u32, u32>,
    nodes: Vec<Node>,
    #[serde(with = "super::pairs")]
    templates: HashMap<TemplateId, Template>,
    next_id: TemplateId,
    #[serde(skip)]
    lru: BTreeMap<u64, TemplateId>,
    #[serde(skip)]
    tick: u64,
}

#[derive(Deserialize)]
struct DrainState {
    params: DrainParams,
    #[serde(with = "super::pairs")]
    lengths: HashMap<u32, u32>,
    nodes: Vec<Node>,
    #[serde(with = "super::pairs")]
    templates: HashMap<TemplateId, Template>,
    next_id: TemplateId,
}

impl TryFrom<DrainState> for Drain {
    type Error = String;

    fn try_from(s: DrainState) -> std::result::Result<Self, String> {
        s.params.check().map_err(|e| e.to_string())?;
        let n = s.nodes.len() as u64;
        let node_ok = |i: &u32| u64::from(*i) < n;
        if !s.lengths.values().all(node_ok)
            || !s.nodes.iter().all(|x| x.children.values().all(node_ok))
        {
            return Err("a tree edge points past the node list".into());
        }
        if let Some(cap) = s.params.max_templates
            && s.templates.len() > cap
        {
            return Err(format!(
                "{} templates over the cap of {cap}",
                s.templates.len()
            ));
        }
        for (id, t) in &s.templates {
            if t.id != *id
                || *id == 0
                || *id >= s.next_id
                || t.tokens.len() > s.params.max_tokens
                || t.leaf as usize >= s.nodes.len()
            {
                return Err(format!("template {id} is inconsistent"));
            }
        }
        // Recency as saved; saved ticks that collide (only a hostile snapshot has them) are renumbered in order.
        let mut templates = s.templates;
        let mut order: Vec<(u64, TemplateId)> =
            templates.values().map(|t| (t.last_used, t.id)).collect();
        order.sort_unstable();
        let mut lru: BTreeMap<u64, TemplateId> = order.iter().copied().collect();
        let too_large = order.last().is_some_and(|(tick, _)| *tick > u64::MAX / 2);
        if lru.len() != order.len() || too_large {
            lru.clear();
            for (tick, (_, id)) in order.iter().enumerate() {
                if let Some(t) = templates.get_mut(id) {
                    t.last_used = tick as u64;
                }
                lru.insert(tick as u64, *id);
            }
        }
        let tick = lru.last_key_value().map_or(0, |(k, _)| *k);
        Ok(Drain {
            params: s.params,
            lengths: s.lengths,
            nodes: s.nodes,
            templates,
            next_id: s.next_id,
            lru,
            tick,
        })
    }
}

impl Drain {
    /// An empty miner.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for settings outside their documented domain.
    pub fn new(params: DrainParams) -> Result<Self> {
        params.check()?;
        Ok(Drain {
            params,
            lengths: HashMap::new(),
            nodes: Vec::new(),
            templates: HashMap::new(),
            next_id: 1,
            lru: BTreeMap::new(),
            tick: 0,
        })
    }

    /// Its settings.
    pub fn params(&self) -> &DrainParams {
        &self.params
    }

    /// Number of templates kept.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether it has no template yet.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// A template by id (`None` once it was forgotten under the cap).
    pub fn template(&self, id: TemplateId) -> Option<&Template> {
        self.templates.get(&id)
    }

    /// Every template kept, in no particular order.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.templates.values()
    }

    /// Learns `line`: matches it to a template (changing the template to cover it) or starts a new one, and
    /// returns the template with the line's parameters.
    pub fn add<'a>(&mut self, line: &'a str) -> LineMatch<'a> {
        let tokens = self.tokens(line);
        let found = self.search(&tokens.masked);
        let mut forgotten = None;
        let (id, change) = match found {
            None => {
                let id = self.next_id;
                // 2^64 templates are out of reach: ids are never reused.
                self.next_id += 1;
                let template = Template {
                    id,
                    tokens: tokens.masked.iter().map(|t| Box::from(&**t)).collect(),
                    size: 1,
                    last_used: 0,
                    leaf: 0,
                };
                forgotten = self.insert(template);
                (id, TemplateChange::Created)
            }
            Some(id) => {
                let Some(t) = self.templates.get_mut(&id) else {
                    unreachable!("search returns kept templates only")
                };
                let mut change = TemplateChange::None;
                for (slot, token) in t.tokens.iter_mut().zip(&tokens.masked) {
                    if **slot != **token && &**slot != WILDCARD {
                        *slot = Box::from(WILDCARD);
                        change = TemplateChange::Generalised;
                    }
                }
                t.size = t.size.saturating_add(1);
                self.touch(id);
                (id, change)
            }
        };
        let parameters = self.parameters(id, &tokens);
        LineMatch {
            template: id,
            change,
            parameters,
            forgotten,
        }
    }

    /// The template `line` would join, without learning it.
    pub fn find(&self, line: &str) -> Option<TemplateId> {
        let tokens = self.tokens(line);
        self.search(&tokens.masked)
    }

    /// The parameters of `line` in template `id`'s slots, as [`add`](Self::add) gives them, without learning.
    pub(crate) fn parameters_of<'a>(&self, id: TemplateId, line: &'a str) -> Vec<(u32, &'a str)> {
        self.parameters(id, &self.tokens(line))
    }

    /// `line` as the miner sees it: its tokens, masked, joined by spaces.
    pub fn masked(&self, line: &str) -> String {
        self.tokens(line).masked.join(" ")
    }

    fn tokens<'a>(&self, line: &'a str) -> Tokens<'a> {
        let raw = tokenize(line, &self.params.extra_delimiters, self.params.max_tokens);
        let mut values = Vec::new();
        let mut spans = Vec::with_capacity(raw.len());
        let masked = raw
            .iter()
            .map(|t| {
                let start = values.len() as u32;
                let m = if t.len() > self.params.max_token_bytes {
                    values.push(*t);
                    std::borrow::Cow::Borrowed(LONG)
                } else {
                    self.params.masks.apply(t, &mut values)
                };
                spans.push((start, values.len() as u32));
                m
            })
            .collect();
        Tokens {
            masked,
            raw,
            values,
            spans,
        }
    }

    /// The line's parameters in the template's slots: a wildcard's whole token, a masked token's values. A token
    /// the template does not share becomes a whole-token parameter too (the template would generalise there), so
    /// [`find`](Self::find) and [`add`](Self::add) see the same parameters.
    fn parameters<'a>(&self, id: TemplateId, tokens: &Tokens<'a>) -> Vec<(u32, &'a str)> {
        let Some(t) = self.templates.get(&id) else {
            return Vec::new();
        };
        if t.tokens.len() != tokens.raw.len() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, slot) in t.tokens.iter().enumerate() {
            let pos = (i as u32) << 3;
            if &**slot == WILDCARD || **slot != *tokens.masked[i] {
                out.push((pos, tokens.raw[i]));
            } else {
                let (a, b) = tokens.spans[i];
                for (k, v) in tokens.values[a as usize..b as usize]
                    .iter()
                    .enumerate()
                    .take(8)
                {
                    out.push((pos | k as u32, *v));
                }
            }
        }
        out
    }

    fn max_node_depth(&self) -> usize {
        self.params.depth - 2
    }

    fn search(&self, tokens: &[std::borrow::Cow<'_, str>]) -> Option<TemplateId> {
        let count = tokens.len();
        let mut node = *self.lengths.get(&(count as u32))?;
        if count == 0 {
            return self.nodes[node as usize]
                .templates
                .first()
                .copied()
                .filter(|id| self.templates.contains_key(id));
        }
        for (depth, token) in (1..).zip(tokens) {
            if depth >= self.max_node_depth() || depth == count {
                break;
            }
            let children = &self.nodes[node as usize].children;
            node = match children.get(&**token).or_else(|| children.get(WILDCARD)) {
                Some(&n) => n,
                None => return None,
            };
        }
        self.best_match(&self.nodes[node as usize].templates, tokens)
    }

    fn best_match(
        &self,
        ids: &[TemplateId],
        tokens: &[std::borrow::Cow<'_, str>],
    ) -> Option<TemplateId> {
        let mut best: Option<TemplateId> = None;
        let (mut best_sim, mut best_params) = (-1.0_f64, -1_i64);
        for id in ids {
            // A template of another length (only in a hostile snapshot) never matches.
            let Some(t) = self
                .templates
                .get(id)
                .filter(|t| t.tokens.len() == tokens.len())
            else {
                continue;
            };
            let (mut same, mut params) = (0_usize, 0_i64);
            for (a, b) in t.tokens.iter().zip(tokens) {
                if &**a == WILDCARD {
                    params += 1;
                } else if **a == **b {
                    same += 1;
                }
            }
            let sim = if t.tokens.is_empty() {
                1.0
            } else {
                same as f64 / t.tokens.len() as f64
            };
            if sim > best_sim || (sim == best_sim && params > best_params) {
                best_sim = sim;
                best_params = params;
                best = Some(*id);
            }
        }
        best.filter(|_| best_sim >= self.params.similarity)
    }

    fn touch(&mut self, id: TemplateId) {
        if self.params.max_templates.is_none() {
            return;
        }
        if let Some(t) = self.templates.get_mut(&id) {
            self.lru.remove(&t.last_used);
            self.tick += 1;
            t.last_used = self.tick;
            self.lru.insert(self.tick, id);
        }
    }

    /// Adds a new template to the tree; returns the one forgotten to make room.
    fn insert(&mut self, mut template: Template) -> Option<TemplateId> {
        let mut forgotten = None;
        if let Some(cap) = self.params.max_templates {
            while self.templates.len() >= cap {
                let Some((_, old)) = self.lru.pop_first() else {
                    break;
                };
                // Out of its leaf's list at once, so lists stay bounded by the templates kept (Drain3 leaves the id
                // until the leaf's next template; matching skips it either way).
                if let Some(t) = self.templates.remove(&old)
                    && let Some(leaf) = self.nodes.get_mut(t.leaf as usize)
                {
                    leaf.templates.retain(|&x| x != old);
                }
                forgotten = Some(old);
            }
            self.tick += 1;
            template.last_used = self.tick;
            self.lru.insert(self.tick, template.id);
        }
        let id = template.id;
        let count = template.tokens.len();
        let first = self.node_for_length(count as u32);
        let mut leaf = first;
        if count == 0 {
            self.nodes[first as usize].templates = vec![id];
        } else {
            let mut node = first;
            for (depth, token) in (1..).zip(&template.tokens) {
                if depth >= self.max_node_depth() || depth >= count {
                    let kept: Vec<TemplateId> = self.nodes[node as usize]
                        .templates
                        .iter()
                        .copied()
                        .filter(|t| self.templates.contains_key(t))
                        .chain(std::iter::once(id))
                        .collect();
                    self.nodes[node as usize].templates = kept;
                    leaf = node;
                    break;
                }
                node = self.child(node, token);
            }
        }
        template.leaf = leaf;
        self.templates.insert(id, template);
        forgotten
    }

    fn node_for_length(&mut self, count: u32) -> u32 {
        if let Some(&n) = self.lengths.get(&count) {
            return n;
        }
        let n = self.new_node();
        self.lengths.insert(count, n);
        n
    }

    fn new_node(&mut self) -> u32 {
        self.nodes.push(Node::default());
        (self.nodes.len() - 1) as u32
    }

    /// The child of `node` a new template's `token` goes to, created as Drain3 does.
    fn child(&mut self, node: u32, token: &str) -> u32 {
        if let Some(&n) = self.nodes[node as usize].children.get(token) {
            return n;
        }
        let max = self.params.max_children;
        let children = &self.nodes[node as usize].children;
        let wildcard = children.get(WILDCARD).copied();
        let len = children.len();
        let key: &str = if self.params.parametrize_numeric_tokens
            && token.bytes().any(|b| b.is_ascii_digit())
        {
            WILDCARD
        } else if wildcard.is_some() {
            if len < max { token } else { WILDCARD }
        } else if len + 1 < max {
            token
        } else {
            WILDCARD
        };
        if key == WILDCARD
            && let Some(w) = wildcard
        {
            return w;
        }
        let n = self.new_node();
        self.nodes[node as usize].children.insert(Box::from(key), n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain() -> Drain {
        Drain::new(DrainParams::drain3()).unwrap()
    }

    #[test]
    fn similar_lines_share_a_template_and_differences_become_wildcards() {
        let mut d = drain();
        let a = d.add("connected to host alpha port 22");
        assert_eq!(a.change, TemplateChange::Created);
        let b = d.add("connected to host beta port 22");
        assert_eq!(
            (b.template, b.change),
            (a.template, TemplateChange::Generalised)
        );
        assert_eq!(
            d.template(a.template).unwrap().text(),
            "connected to host <*> port 22"
        );
        assert_eq!(b.parameters, vec![(3 << 3, "beta")]);
        let c = d.add("connected to host gamma port 22");
        assert_eq!(c.change, TemplateChange::None);
        assert_eq!(d.template(a.template).unwrap().size(), 3);
        assert_ne!(d.add("disk full on volume 3").template, a.template);
        assert_eq!(d.find("connected to host delta port 22"), Some(a.template));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn masked_values_are_parameters() {
        let mut d = Drain::new(DrainParams::default()).unwrap();
        let a = d.add("request from 10.0.0.1 took 35 ms");
        let b = d.add("request from 10.0.0.2 took 41 ms");
        assert_eq!(a.template, b.template);
        assert_eq!(b.change, TemplateChange::None);
        assert_eq!(
            d.template(a.template).unwrap().text(),
            "request from <IP> took <NUM> ms"
        );
        assert_eq!(b.parameters, vec![(2 << 3, "10.0.0.2"), (4 << 3, "41")]);
    }

    #[test]
    fn empty_lines_have_one_template() {
        let mut d = drain();
        let a = d.add("");
        let b = d.add("   ");
        assert_eq!(a.template, b.template);
        assert_eq!(d.template(a.template).unwrap().text(), "");
    }

    #[test]
    fn the_template_cap_forgets_the_least_recently_matched() {
        let mut d = Drain::new(DrainParams {
            max_templates: Some(2),
            ..DrainParams::drain3()
        })
        .unwrap();
        let a = d.add("alpha one").template;
        let b = d.add("beta two").template;
        d.add("alpha one");
        let added = d.add("gamma three");
        assert_eq!(added.forgotten, Some(b));
        let c = added.template;
        assert_eq!(d.len(), 2);
        assert!(d.template(a).is_some() && d.template(c).is_some() && d.template(b).is_none());
        // A forgotten template's lines start a new one.
        assert_eq!(d.add("beta two").change, TemplateChange::Created);
        // Restored with colliding recency (hostile), the cap still holds.
        let mut state = serde_json::to_value(&d).unwrap();
        for pair in state["templates"].as_array_mut().unwrap() {
            pair[1]["last_used"] = 7.into();
        }
        let mut back: Drain = serde_json::from_value(state).unwrap();
        back.add("delta four");
        back.add("epsilon five");
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn a_restored_miner_matches_as_the_original() {
        let mut d = Drain::new(DrainParams::default()).unwrap();
        for l in [
            "user alice logged in",
            "user bob logged in",
            "disk sda full",
        ] {
            d.add(l);
        }
        let json = serde_json::to_string(&d).unwrap();
        let mut back: Drain = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.find("user carol logged in"),
            d.find("user carol logged in")
        );
        assert_eq!(
            back.add("disk sdb full").template,
            d.add("disk sdb full").template
        );
        let mut hostile: serde_json::Value = serde_json::from_str(&json).unwrap();
        hostile["next_id"] = 1.into();
        assert!(serde_json::from_value::<Drain>(hostile).is_err());
        let mut hostile: serde_json::Value = serde_json::from_str(&json).unwrap();
        hostile["lengths"][0][1] = 99.into();
        assert!(serde_json::from_value::<Drain>(hostile).is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        for p in [
            DrainParams {
                depth: 2,
                ..DrainParams::default()
            },
            DrainParams {
                similarity: 1.5,
                ..DrainParams::default()
            },
            DrainParams {
                max_children: 1,
                ..DrainParams::default()
            },
            DrainParams {
                max_templates: Some(0),
                ..DrainParams::default()
            },
        ] {
            assert!(matches!(Drain::new(p), Err(Error::InvalidParameter { .. })));
        }
    }
}
