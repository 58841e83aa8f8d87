//! PostgreSQL cannot store the NUL character (U+0000) in `TEXT` or `JSONB`: a value holding one is refused up front
//! with an error naming its field, instead of failing as a database error (or, in a batch, taking the rest down).

use serde_json::Value;

use crate::error::{Result, StoreError};

/// Refuses NUL characters when the backend cannot store them; lets everything through otherwise.
#[derive(Debug, Clone, Copy)]
pub(super) struct NulCheck {
    pub(super) active: bool,
}

impl NulCheck {
    pub(super) fn text(self, field: &'static str, value: &str) -> Result<()> {
        if self.active && value.contains('\0') {
            return Err(refused(field));
        }
        Ok(())
    }

    pub(super) fn opt_text(self, field: &'static str, value: Option<&str>) -> Result<()> {
        value.map_or(Ok(()), |v| self.text(field, v))
    }

    pub(super) fn json(self, field: &'static str, value: &Value) -> Result<()> {
        if !self.active {
            return Ok(());
        }
        match value {
            Value::String(s) => self.text(field, s),
            Value::Array(items) => items.iter().try_for_each(|v| self.json(field, v)),
            Value::Object(map) => map.iter().try_for_each(|(k, v)| {
                self.text(field, k)?;
                self.json(field, v)
            }),
            _ => Ok(()),
        }
    }
}

fn refused(field: &'static str) -> StoreError {
    StoreError::InvalidInput {
        field,
        reason: "contains a NUL character (U+0000), which PostgreSQL cannot store".into(),
    }
}
