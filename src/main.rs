//! `wharf`: the command line. Parses arguments, loads the configuration,
//! and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A high-availability container registry, drop-in for registry:2.
#[derive(Parser)]
#[command(name = "wharf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry API (config: argument, REGISTRY_CONFIGURATION_PATH, or the embedded default).
    Serve {
        /// Path to config.yml.
        config: Option<PathBuf>,
    },
    /// Delete blobs that no manifest references (run with the registry stopped or read-only).
    GarbageCollect {
        /// Only print what would be deleted.
        #[arg(short = 'd', long)]
        dry_run: bool,
        /// Also delete manifests that no tag points to.
        #[arg(short = 'm', long)]
        delete_untagged: bool,
        /// Print less.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Run one pass against a live cluster, under the cluster's lease, with the `gc`
        /// section's grace period (the flags above override its `dryrun` and `deleteuntagged`).
        #[arg(long)]
        online: bool,
        /// Path to config.yml.
        config: Option<PathBuf>,
    },
    /// Check a configuration before applying it.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Switch cluster-wide maintenance modes without a restart.
    Maintenance {
        #[command(subcommand)]
        mode: MaintenanceMode,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Parse and validate as `serve` would (REGISTRY_* overlay included), print the effective
    /// configuration with secrets masked; exit status 1 when it is refused.
    Check {
        /// Path to config.yml.
        config: PathBuf,
    },
    /// List the keys that differ between two configurations, and whether a reload applies
    /// each change or it needs a restart.
    Diff {
        /// The configuration running now.
        old: PathBuf,
        /// The configuration to apply.
        new: PathBuf,
    },
}

#[derive(Subcommand)]
enum MaintenanceMode {
    /// Refuse writes on every node (405 UNSUPPORTED) until switched off; nodes notice within
    /// about a second.
    Readonly {
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// Path to config.yml.
        config: Option<PathBuf>,
    },
}

/// Loads and checks `path` as `serve` would, the files it names opened and parsed, without
/// touching storage or the network.
fn check(path: &std::path::Path) -> Result<wharf::config::Loaded, String> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut loaded = wharf::config::load(Some(path), &env).map_err(|e| e.to_string())?;
    wharf::check(&loaded.config).map_err(|e| e.to_string())?;
    let warnings = wharf::referenced_files::check(&loaded.config).map_err(|e| e.to_string())?;
    loaded.warnings.extend(warnings);
    Ok(loaded)
}

fn config_command(action: ConfigAction) -> ExitCode {
    match action {
        ConfigAction::Check { config } => match check(&config) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("wharf: warning: {w}");
                }
                let shown = wharf::config::masked(&loaded.effective);
                print!("{}", serde_yaml::to_string(&shown).unwrap_or_default());
                eprintln!("wharf: {}: configuration OK", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wharf: configuration error: {e}");
                ExitCode::from(1)
            }
        },
        ConfigAction::Diff { old, new } => {
            let (old_loaded, new_loaded) = match (check(&old), check(&new)) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) => {
                    eprintln!("wharf: {}: configuration error: {e}", old.display());
                    return ExitCode::from(1);
                }
                (_, Err(e)) => {
                    eprintln!("wharf: {}: configuration error: {e}", new.display());
                    return ExitCode::from(1);
                }
            };
            let changes = wharf::config::diff(&old_loaded.effective, &new_loaded.effective);
            if changes.is_empty() {
                eprintln!("wharf: no changes");
            }
            for change in changes {
                let when = match change.applies {
                    wharf::config::Applies::Live => "live",
                    wharf::config::Applies::NeedsRestart => "needs-restart",
                };
                println!("{when:<14}{}", change.key);
            }
            ExitCode::SUCCESS
        }
    }
}

fn load(path: Option<&std::path::Path>) -> Result<wharf::config::Config, ExitCode> {
    load_all(path).map(|loaded| loaded.config)
}

fn load_all(path: Option<&std::path::Path>) -> Result<wharf::config::Loaded, ExitCode> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    match wharf::config::load(path, &env) {
        Ok(loaded) => {
            wharf::ops::logging::init(&loaded.config.log);
            for w in &loaded.warnings {
                tracing::warn!("configuration: {w}");
            }
            Ok(loaded)
        }
        Err(e) => {
            eprintln!("wharf: configuration error: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// The async runtime; `storage.filesystem.maxthreads` bounds the threads that
/// do blocking disk I/O, as it bounds distribution's filesystem driver.
fn runtime(config: &wharf::config::Config) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let wharf::config::StorageDriverConfig::Filesystem { maxthreads, .. } =
        &config.storage.driver
    {
        builder.max_blocking_threads((*maxthreads).max(1));
    }
    builder.enable_all().build().expect("tokio runtime")
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let loaded = match load_all(config.as_deref()) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let env: Vec<(String, String)> = std::env::vars().collect();
            // Reloads read the file serve started with, REGISTRY_CONFIGURATION_PATH included.
            let path = config.or_else(|| {
                std::env::var_os(wharf::config::CONFIGURATION_PATH_VAR)
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            });
            let source = wharf::generation::ReloadSource { path, env };
            match runtime(&loaded.config).block_on(wharf::serve(loaded, source)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("wharf: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Config { action } => config_command(action),
        Command::Maintenance {
            mode: MaintenanceMode::Readonly { state, config },
        } => {
            let config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let on = state == "on";
            match runtime(&config).block_on(wharf::set_read_only(&config, on)) {
                Ok(()) => {
                    println!("read-only mode {state}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("wharf: maintenance readonly: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::GarbageCollect {
            dry_run,
            delete_untagged,
            quiet,
            online,
            config,
        } => {
            let config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if online {
                let mut options = wharf::coord::collector::options(&config);
                options.dry_run |= dry_run;
                options.delete_untagged |= delete_untagged;
                let run = wharf::garbage_collect_online(&config, &options);
                return match runtime(&config).block_on(run) {
                    Ok(report) => {
                        println!("{}", serde_json::to_string(&report).unwrap_or_default());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("wharf: garbage-collect --online: {e}");
                        ExitCode::from(1)
                    }
                };
            }
            let options = wharf::registry::gc::GcOptions {
                dry_run,
                delete_untagged,
                quiet,
            };
            match runtime(&config).block_on(wharf::garbage_collect(&config, &options)) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("wharf: garbage-collect: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// glibc gives each thread that allocates under contention its own arena (up to
/// 8 per core) and keeps freed memory in each: with downloads' buffers freed on
/// other threads than the ones that allocated them, that doubled the peak
/// memory of 16 parallel pulls, for no measurable speed. Two arenas, unless
/// `MALLOC_ARENA_MAX` says otherwise.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before
        // any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
