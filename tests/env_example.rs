//! `.env.example` documents exactly the variables jkmon reads.

use std::collections::BTreeSet;

#[test]
fn env_example_lists_exactly_the_variables_the_code_reads() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    let documented: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let read: BTreeSet<&str> = jkmon::config::VARIABLES
        .iter()
        .chain(jkmon::cli::VARIABLES)
        .copied()
        .collect();
    assert_eq!(documented, read);
    // and every value in the example is one the config accepts
    let pairs: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    jkmon::config::Config::from_lookup(|k| {
        pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .expect(".env.example is a valid configuration");
}
