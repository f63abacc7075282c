//! The end of a `[section]`: its key lines are applied, once for a plain daemon, or once
//! per instance for `instances = N`, which makes daemons `NAME-1` ... `NAME-N`, each with
//! `BUNDLE_INIT_INSTANCE` set to its number, in its environment and for `${...}` in its
//! keys. The section's name then stands for all of them in `after`, routes, the selection
//! and control.

use super::{ConfigError, Parser, Place, Problem, SectionLine};
use crate::expand::{self, Lookup};
use crate::plan::DaemonSpec;
use crate::values::check_name;

/// The variable each instance gets, and that `${...}` in its keys finds.
pub(crate) const INSTANCE_VARIABLE: &str = "BUNDLE_INIT_INSTANCE";

impl Parser<'_> {
    /// Applies the section's lines to its daemon, or makes its instances.
    pub(super) fn close_section(&mut self) -> Result<(), ConfigError> {
        if !self.in_section {
            return Ok(());
        }
        self.in_section = false;
        let lines = std::mem::take(&mut self.section_lines);
        let (Some(mut section), Some(place)) =
            (self.bundle.daemons.pop(), self.section_places.pop())
        else {
            return Ok(());
        };
        let Some(count) = self.instance_count(&section, &lines)? else {
            self.apply(&mut section, &lines, self.lookup)?;
            self.bundle.daemons.push(section);
            self.section_places.push(place);
            return Ok(());
        };
        for number in 1..=count {
            let instance = self.instance(&section.name, number, &lines, place)?;
            self.bundle.daemons.push(instance);
            self.section_places.push(place);
        }
        Ok(())
    }

    /// `instances = N` of the section, if it has the line.
    fn instance_count(
        &self,
        section: &DaemonSpec,
        lines: &[SectionLine],
    ) -> Result<Option<u32>, ConfigError> {
        let Some((definition, value, place)) = lines.iter().find(|(k, _, _)| k.name == "instances")
        else {
            return Ok(None);
        };
        let mut probe = DaemonSpec::new(&section.name, Vec::new());
        (definition.parse)(&mut probe, value).map_err(|e| self.error_at(*place, e.into()))?;
        Ok(probe.instances)
    }

    /// Instance `number` of section `name`, checked as a daemon of its own at the section's
    /// header: a valid name, not defined already, within the limit.
    fn instance(
        &self,
        name: &str,
        number: u32,
        lines: &[SectionLine],
        place: Place,
    ) -> Result<DaemonSpec, ConfigError> {
        let instance_name = format!("{name}-{number}");
        check_name(&instance_name).map_err(|e| self.error_at(place, e.into()))?;
        if let Some(first) = self
            .bundle
            .daemons
            .iter()
            .position(|d| d.is_named(&instance_name))
        {
            let first = self.describe(self.section_places[first]);
            return Err(self.error_at(place, Problem::DaemonTwice(instance_name, first)));
        }
        if self.bundle.daemons.len() >= super::MAX_DAEMONS {
            return Err(self.error_at(place, Problem::TooManyDaemons));
        }
        let mut spec = DaemonSpec::new(&instance_name, Vec::new());
        spec.instance_of = Some(name.to_string());
        let text = number.to_string();
        // Set first: an `env` line of the section may still override it.
        spec.env
            .set
            .push((INSTANCE_VARIABLE.into(), text.clone().into()));
        let outer = self.lookup;
        let lookup = |variable: &str| match variable == INSTANCE_VARIABLE {
            true => Lookup::Set(text.clone()),
            false => outer(variable),
        };
        self.apply(&mut spec, lines, &lookup)?;
        Ok(spec)
    }

    /// Applies each line's value, expanded for the keys that take variables.
    fn apply(
        &self,
        spec: &mut DaemonSpec,
        lines: &[SectionLine],
        lookup: &dyn Fn(&str) -> Lookup,
    ) -> Result<(), ConfigError> {
        for (definition, value, place) in lines {
            let error = |problem: Problem| self.error_at(*place, problem);
            let value = match definition.expand {
                true => expand::expand(value, lookup).map_err(|e| error(e.into()))?,
                false => value.clone(),
            };
            (definition.parse)(spec, &value).map_err(|e| error(e.into()))?;
        }
        Ok(())
    }

    /// `after = worker` waits for every instance of `worker`: the name is replaced by
    /// theirs, before `after` is checked.
    pub(super) fn after_names_every_instance(&mut self) {
        let daemons = &self.bundle.daemons;
        let expanded: Vec<Vec<String>> = daemons
            .iter()
            .map(|d| {
                d.after
                    .iter()
                    .flat_map(|name| instance_names(daemons, name))
                    .collect()
            })
            .collect();
        for (daemon, after) in self.bundle.daemons.iter_mut().zip(expanded) {
            daemon.after = after;
        }
    }
}

/// The names `name` stands for: its instances if it is a section that made some, else
/// itself.
fn instance_names(daemons: &[DaemonSpec], name: &str) -> Vec<String> {
    let instances: Vec<String> = daemons
        .iter()
        .filter(|d| d.instance_of.as_deref() == Some(name))
        .map(|d| d.name.clone())
        .collect();
    match instances.is_empty() {
        true => vec![name.to_string()],
        false => instances,
    }
}
