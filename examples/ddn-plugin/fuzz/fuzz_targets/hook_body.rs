//! Arbitrary request bodies and `X-Hasura-Role` / `X-Hasura-User` headers into the hook's request parser: `Ok` or
//! `PluginError::BadRequest`, never a panic, abort or hang. A parsed request's datasets go on to `records_of` and
//! its query to `query_id`, as the plugin does next.
#![no_main]

use ddn_plugin::protocol::{HookRequest, query_id, records_of};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    role: Option<&'a str>,
    user: Option<&'a str>,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    if let Ok(request) = HookRequest::parse(input.body, input.role, input.user) {
        let _ = query_id(&request.query);
        for (name, value) in &request.datasets {
            let _ = records_of(name, value);
        }
    }
});
