//! [`Env`]: environment variables read with typed, named errors.

use std::str::FromStr;
use std::time::Duration;

use crate::error::KitError;

/// Gives a variable's value, or `None`.
type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// A source of settings: the process environment ([`Env::process`]) or any lookup ([`Env::from_lookup`], for
/// tests). Values are trimmed; an empty value counts as unset.
///
/// ```
/// use service_kit::Env;
///
/// let env = Env::from_lookup(|name| (name == "PORT").then(|| "9000".to_string()));
/// assert_eq!(env.number("PORT", 8080u16, 1, u16::MAX)?, 9000);
/// assert_eq!(env.flag("ALLOW_UNAUTHENTICATED")?, false);
/// assert!(Env::from_lookup(|_| Some("soon".into())).number("PORT", 80u16, 1, u16::MAX).is_err());
/// # Ok::<(), service_kit::KitError>(())
/// ```
pub struct Env<'a> {
    lookup: Lookup<'a>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

impl Env<'static> {
    /// The process environment.
    pub fn process() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

impl<'a> Env<'a> {
    /// Settings `lookup` gives (a variable's value, or `None`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Env {
            lookup: Box::new(lookup),
        }
    }

    /// The value of `name`, trimmed; `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// `name` parsed as `T`, or `default` when unset.
    ///
    /// # Errors
    /// [`KitError::Config`] naming the variable when the value does not parse.
    pub fn parse<T: FromStr>(&self, name: &str, default: T) -> Result<T, KitError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| KitError::config(name, format!("`{v}`: {e}"))),
        }
    }

    /// A number in `min..=max`, or `default` when unset.
    ///
    /// # Errors
    /// [`KitError::Config`] naming the variable and the range.
    pub fn number<T>(&self, name: &str, default: T, min: T, max: T) -> Result<T, KitError>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        match v.parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(KitError::config(
                name,
                format!("`{v}` is not a number between {min} and {max}"),
            )),
        }
    }

    /// Whole seconds in `min..=max` (default `default`) as a duration.
    ///
    /// # Errors
    /// As [`number`](Self::number).
    pub fn seconds(
        &self,
        name: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<Duration, KitError> {
        self.number(name, default, min, max)
            .map(Duration::from_secs)
    }

    /// A yes/no setting (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`), false when unset.
    ///
    /// # Errors
    /// [`KitError::Config`] for any other value.
    pub fn flag(&self, name: &str) -> Result<bool, KitError> {
        self.flag_or(name, false)
    }

    /// A boolean (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`), or `default` when unset.
    ///
    /// # Errors
    /// [`KitError::Config`] naming the variable for any other value.
    pub fn flag_or(&self, name: &str, default: bool) -> Result<bool, KitError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some(v) => Err(KitError::config(
                name,
                format!("`{v}` is not true or false"),
            )),
        }
    }
}
