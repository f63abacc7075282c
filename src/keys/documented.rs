//! docs/bundle-file.md's tables list exactly the bundle keys, daemon keys and route actions
//! bundle-init knows. A key defined in `keys` without its row in the reference, or a row
//! for a key that is not defined, fails here with its name.

use super::{BUNDLE_KEYS, DAEMON_KEYS, ROUTE_ACTIONS};

const REFERENCE: &str = include_str!("../../docs/bundle-file.md");

/// The routes' row of the bundle-key table: `on SIGNAL = ACTION`.
const ROUTE_ROW: &str = "on SIGNAL";

/// The names in the first column of the table under the line `## {heading}`: the text in
/// the cell's first backticks, up to ` =` (`run = PROGRAM ARGS...` is `run`) or, with
/// `up_to_space`, its first space (`restart NAME...` is `restart`).
fn table_names(doc: &str, heading: &str, up_to_space: bool) -> Vec<String> {
    let title = format!("## {heading}");
    let mut lines = doc.lines().skip_while(|l| *l != title).skip(1);
    let rows = lines
        .by_ref()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2); // the header and the |---| line
    rows.filter_map(|row| {
        let cell = row.split('|').nth(1)?;
        let code = cell.split('`').nth(1)?;
        let name = match up_to_space {
            true => code.split(' ').next()?,
            false => code.split(" =").next()?,
        };
        Some(name.trim().to_string())
    })
    .collect()
}

/// What is wrong with a table's names against what bundle-init defines, or None.
fn differences(table: &str, rows: &[String], defined: &[&str]) -> Option<String> {
    let missing: Vec<&str> = defined
        .iter()
        .copied()
        .filter(|d| !rows.iter().any(|r| r == d))
        .collect();
    let unknown: Vec<&str> = rows
        .iter()
        .map(String::as_str)
        .filter(|r| !defined.contains(r))
        .collect();
    let twice: Vec<&str> = rows
        .iter()
        .enumerate()
        .filter(|(i, r)| rows[..*i].contains(r))
        .map(|(_, r)| r.as_str())
        .collect();
    if missing.is_empty() && unknown.is_empty() && twice.is_empty() {
        return None;
    }
    Some(format!(
        "docs/bundle-file.md, table \"{table}\": no row for {missing:?}; \
         rows for what bundle-init does not define: {unknown:?}; rows twice: {twice:?}"
    ))
}

fn check(table: &str, up_to_space: bool, defined: &[&str]) {
    let rows = table_names(REFERENCE, table, up_to_space);
    assert!(
        !rows.is_empty(),
        "docs/bundle-file.md has no table under \"## {table}\""
    );
    if let Some(wrong) = differences(table, &rows, defined) {
        panic!("{wrong}");
    }
}

#[test]
fn the_daemon_key_table_lists_every_daemon_key_and_no_other() {
    let defined: Vec<&str> = DAEMON_KEYS.iter().map(|k| k.name).collect();
    check("Daemon keys", false, &defined);
}

#[test]
fn the_bundle_key_table_lists_every_bundle_key_and_the_routes() {
    let mut defined = BUNDLE_KEYS.to_vec();
    defined.push(ROUTE_ROW);
    check("Bundle keys", false, &defined);
}

#[test]
fn the_route_action_table_lists_every_route_action_and_no_other() {
    let defined: Vec<&str> = ROUTE_ACTIONS.iter().map(|a| a.name).collect();
    check("Route actions", true, &defined);
}

/// The check itself: a table is read from its heading's first table only, and a missing,
/// an unknown and a doubled row are each named.
#[test]
fn a_missing_an_unknown_and_a_doubled_row_are_named() {
    let doc = "## Keys\n\nText.\n\n| key | default | meaning |\n|---|---|---|\n\
               | `run = PROGRAM` | required | it |\n| `grace = D` | `8s` | it |\n\
               | `grace = D` | `8s` | again |\n| `old = X` | — | gone |\n\n\
               | `later = X` | — | another table |\n\n## Actions\n\n| action | meaning |\n\
               |---|---|\n| `restart NAME...` | it |\n";
    let rows = table_names(doc, "Keys", false);
    assert_eq!(rows, ["run", "grace", "grace", "old"]);
    assert_eq!(table_names(doc, "Actions", true), ["restart"]);
    let wrong = differences("Keys", &rows, &["run", "grace", "new"]).unwrap();
    assert!(wrong.contains("no row for [\"new\"]"), "{wrong}");
    assert!(wrong.contains("does not define: [\"old\"]"), "{wrong}");
    assert!(wrong.contains("rows twice: [\"grace\"]"), "{wrong}");
    assert_eq!(differences("Keys", &rows[..2], &["run", "grace"]), None);
}
