//! End-to-end tests: one trial per scenario, each running the real `cargo-isotest` binary.
//!
//! Run as root, every sandbox scenario runs a second time as an unprivileged user
//! (`ISOTEST_TEST_USER`, else `nobody`), because that is how most people run it; the
//! id-mapping and hardening ones a third time, as a user without subordinate ranges
//! (`ISOTEST_TEST_USER_NO_RANGES`, else `nobody`).

mod chaos;
mod ci;
mod config;
mod ctx;
mod flaky;
mod harden;
mod hostfacts;
mod hostile;
mod ids;
mod layers;
mod limits;
mod parity;
mod probe;
mod run;
mod sandbox;

use libtest_mimic::{Arguments, Failed, Trial};

use ctx::{Ctx, User};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(probe::ARG) {
        probe::main(&args[2..]);
    }
    let arguments = Arguments::from_args();
    let unprivileged = nix::unistd::geteuid().is_root().then(User::unprivileged);
    let mut trials = Vec::new();
    let scenarios = sandbox::SCENARIOS
        .iter()
        .map(|(n, s)| (format!("sandbox::{n}"), *s));
    let scenarios = scenarios.chain(
        run::SCENARIOS
            .iter()
            .map(|(n, s)| (format!("run::{n}"), *s)),
    );
    let scenarios = scenarios.chain(ci::SCENARIOS.iter().map(|(n, s)| (format!("ci::{n}"), *s)));
    let scenarios = scenarios.chain(
        chaos::SCENARIOS
            .iter()
            .map(|(n, s)| (format!("chaos::{n}"), *s)),
    );
    let scenarios = scenarios.chain(
        limits::SCENARIOS
            .iter()
            .map(|(n, s)| (format!("limits::{n}"), *s)),
    );
    let scenarios = scenarios.chain(
        ids::SCENARIOS
            .iter()
            .map(|(n, s)| (format!("sandbox::{n}"), *s)),
    );
    let scenarios = scenarios.chain(
        hostfacts::SCENARIOS
            .iter()
            .map(|(n, s)| (format!("hostfacts::{n}"), *s)),
    );
    let scenarios = scenarios.chain(
        flaky::SCENARIOS
            .iter()
            .map(|(n, s)| (format!("flaky::{n}"), *s)),
    );
    let scenarios = scenarios.chain(
        harden::SCENARIOS
            .iter()
            .map(|(n, s)| (format!("harden::{n}"), *s)),
    );
    let scenarios = scenarios.chain(
        hostile::SCENARIOS
            .iter()
            .map(|(n, s)| (format!("hostile::{n}"), *s)),
    );
    let scenarios = scenarios.chain(
        layers::SCENARIOS
            .iter()
            .chain(layers::IN_EVERY_ID_MODE)
            .map(|(n, s)| (format!("layers::{n}"), *s)),
    );
    let scenarios = scenarios.chain(config::SCENARIOS.iter().map(|(n, s)| (n.to_string(), *s)));
    for (name, scenario) in scenarios {
        trials.push(Trial::test(name.clone(), move || scenario(&Ctx::new(None))));
        if let Some(user) = &unprivileged {
            let user = user.clone();
            trials.push(Trial::test(format!("unprivileged::{name}"), move || {
                scenario(&Ctx::new(Some(user)))
            }));
        }
    }
    // The id-mapping modes differ between a user with subordinate ranges and one without,
    // so those scenarios, and the hardening that must hold in every mode, also run as a
    // second user, who has none.
    if nix::unistd::geteuid().is_root() {
        let user = User::without_ranges();
        let by_mode = ids::SCENARIOS
            .iter()
            .map(|(n, s)| (format!("sandbox::{n}"), *s))
            .chain(
                harden::SCENARIOS
                    .iter()
                    .map(|(n, s)| (format!("harden::{n}"), *s)),
            )
            .chain(
                layers::IN_EVERY_ID_MODE
                    .iter()
                    .map(|(n, s)| (format!("layers::{n}"), *s)),
            );
        for (name, scenario) in by_mode {
            let user = user.clone();
            trials.push(Trial::test(
                format!("unprivileged-no-ranges::{name}"),
                move || scenario(&Ctx::new(Some(user))),
            ));
        }
    }
    for &(name, scenario) in run::ONCE {
        trials.push(Trial::test(format!("run::{name}"), move || {
            scenario(&Ctx::new(None))
        }));
    }
    trials.push(Trial::test(
        "parity::filtersets_select_what_nextest_selects",
        || parity::filtersets_select_what_nextest_selects(&Ctx::new(None)),
    ));
    libtest_mimic::run(&arguments, trials).exit();
}

/// Lets the scenario's user write where the scenario prepared a directory.
fn give_to_user(ctx: &Ctx, path: &str) -> Result<(), Failed> {
    if let Some(user) = &ctx.user {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(user.uid)),
            Some(nix::unistd::Gid::from_raw(user.gid)),
        )?;
    }
    Ok(())
}
