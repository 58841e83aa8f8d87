//! Arbitrary text into the read-only guard, in every dialect: `Ok` or `StoreError::NotReadOnly`, never a panic, an
//! abort (deep nesting overflowing the stack) or a hang. What it accepts must come from the input, and accepting
//! must be stable: the accepted text (what runs, wrapped as a sub-query) is accepted again, as itself.
#![no_main]

use anomaly_store::{SqlDialect, check_read_only_select};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    for dialect in [SqlDialect::Postgres, SqlDialect::MySql, SqlDialect::Sqlite] {
        if let Ok(accepted) = check_read_only_select(sql, dialect) {
            assert!(sql.contains(accepted), "{dialect}: the accepted text comes from the input");
            let again = check_read_only_select(accepted, dialect)
                .unwrap_or_else(|e| panic!("{dialect}: accepted {accepted:?} once, then refused: {e}"));
            assert_eq!(again, accepted, "{dialect}: accepting is stable");
        }
    }
});
