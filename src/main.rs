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
    /// Switch cluster-wide maintenance modes without a restart.
    Maintenance {
        #[command(subcommand)]
        mode: MaintenanceMode,
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

fn load(path: Option<&std::path::Path>) -> Result<wharf::config::Config, ExitCode> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    match wharf::config::load(path, &env) {
        Ok(loaded) => {
            wharf::ops::logging::init(&loaded.config.log);
            for w in &loaded.warnings {
                tracing::warn!("configuration: {w}");
            }
            Ok(loaded.config)
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
            let config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match runtime(&config).block_on(wharf::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("wharf: {e}");
                    ExitCode::from(1)
                }
            }
        }
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
