//! `lamina <module> init | start | config | migrate`: the commands every module has, run for the
//! module named on the command line (the dispatcher in [`crate::cli`], and the module
//! commands that add their own subcommands, call [`run`]).

use std::process::ExitCode;

use crate::args::{HomeArg, ModuleCmd};
use crate::config::NodeConfig;
use crate::home::Home;
use crate::module::Module;

/// The home a module command works on: `--home`, else `$LAMINA_HOME`, else the module's
/// default directory.
pub fn home_for(module: Module, arg: &HomeArg) -> anyhow::Result<Home> {
    Ok(Home::new(crate::home::resolve(arg.home.as_deref(), std::env::var_os(crate::home::HOME_ENV), module)?))
}

/// Runs `lamina <module> init | start | config | migrate` for `module`.
pub fn run(module: Module, cmd: ModuleCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ModuleCmd::Init(a) => {
            let home = home_for(module, &a.home)?;
            // Flags given to init are written into config.toml (validated like at start).
            let defaults = NodeConfig::new(module).to_annotated_toml();
            let config = crate::config::load_layered(&defaults, "defaults", &[], &a.config.overrides()?)?;
            let report = crate::init::init(&crate::init::InitOptions {
                module,
                home: home.clone(),
                genesis: a.genesis,
                import_key: a.key,
                force: a.force,
                config,
            })?;
            eprintln!("initialized {module} home {}", home.root().display());
            eprintln!("  config   {}", home.config_file().display());
            eprintln!(
                "  key      {} ({})",
                home.key_file().display(),
                if report.key_generated { "generated, 0600" } else { "kept/imported, 0600" }
            );
            match (&report.genesis_installed, &report.genesis_name) {
                (true, Some(name)) => eprintln!("  genesis  {} (this node is {name:?})", home.genesis_file().display()),
                (true, None) => eprintln!(
                    "  genesis  {} (warning: this key is not among its {}; `start` will refuse until it is)",
                    home.genesis_file().display(),
                    module.role_name()
                ),
                (false, _) => eprintln!(
                    "  genesis  none yet: add this key with `lamina genesis add-node --role {module} --key {} ...`,\n           then copy the genesis to {}",
                    report.public_key,
                    home.genesis_file().display()
                ),
            }
            println!("{}", report.public_key);
            Ok(ExitCode::SUCCESS)
        }
        ModuleCmd::Start(a) => {
            let home = home_for(module, &a.home)?;
            crate::service::start(module, home.root().to_path_buf(), &a.config.overrides()?)
        }
        ModuleCmd::Config(a) => {
            let home = home_for(module, &a.home)?;
            let cfg = crate::service::load_config(&home, module, &a.config.overrides()?)?;
            print!("{}", cfg.to_annotated_toml());
            Ok(ExitCode::SUCCESS)
        }
        ModuleCmd::Migrate(a) => {
            let home = home_for(module, &a)?;
            let steps = home.migrate()?;
            if steps.is_empty() {
                eprintln!(
                    "{} is already at data format version {}",
                    home.root().display(),
                    crate::home::DATA_FORMAT_VERSION
                );
            }
            for step in steps {
                eprintln!(
                    "migrated {} from version {} to {}: {}",
                    home.root().display(),
                    step.from,
                    step.from + 1,
                    step.what
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
