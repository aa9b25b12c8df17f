//! genrepi's command line: parses arguments, sets up logging, calls the
//! library and maps the outcome to an exit code (0 ok, 1 failure or some
//! inputs failed, 2 bad usage).

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};

use genrepi::audio::FileSource;
use genrepi::config::ListenConfig;
use genrepi::frontend::{Frontend, StageTimes, classify_stream};
use genrepi::kiosk;
use genrepi::model::variant::Support;
use genrepi::model::{self, Model};
use genrepi::output::{Format, Printer};
use genrepi::progress::Progress;
use genrepi::scheduler::LiveSettings;
use genrepi::{dataset, eval, limits};

/// Music genre, every second, from a microphone or a file.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: Common,
}

/// Options every command takes.
#[derive(Args, Debug)]
struct Common {
    /// Model manifest (.toml) or ONNX file with a manifest beside it
    /// [default: $GENREPI_MODEL, else models/default.toml here or beside
    /// the binary, else /usr/share/genrepi/models/default.toml]
    #[arg(long, global = true, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Threads for each inference's matrix products, 1 to 256 [default: 1,
    /// or `threads =` in listen's config file].
    #[arg(long, global = true, value_name = "N", value_parser = limits::parser(limits::THREADS))]
    threads: Option<usize>,
    /// Which of the manifest's variants to run: `auto` (the fastest this
    /// CPU runs natively, measured by `bench` when it has run here) or a
    /// name from `info`.
    #[arg(long, global = true, default_value = "auto", value_name = "NAME")]
    variant: model::Choice,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Classify audio files through the streaming path, window by window.
    Replay {
        /// Audio files (WAV, FLAC, MP3, OGG/Vorbis, AIFF).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Pace each file at real time through the live pipeline (`listen
        /// --input FILE`: queue, deadline, silence gate, smoothing), printing
        /// listen's lines.
        #[arg(long, conflicts_with = "timings")]
        realtime: bool,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
        /// Seconds between window starts (0.01 to 3600).
        #[arg(long, default_value_t = 1.0, value_name = "SECONDS",
              value_parser = limits::parser(limits::HOP_SECONDS))]
        hop: f64,
        /// Print time per stage (decode, resample, features, inference) to stderr.
        #[arg(long)]
        timings: bool,
    },
    /// Accuracy on a GTZAN-layout folder (DIR/<genre>/<clip>).
    Eval {
        /// Dataset folder.
        dir: PathBuf,
        /// Also write the full report as JSON.
        #[arg(long, value_name = "FILE.json")]
        report: Option<PathBuf>,
        #[command(flatten)]
        batch: BatchArgs,
    },
    /// Write a dataset's windows exactly as the model receives them (.npz).
    Features {
        /// Dataset folder in GTZAN layout.
        dir: PathBuf,
        /// Output .npz; a .json with labels and clip paths goes beside it.
        #[arg(long, value_name = "FILE.npz")]
        out: PathBuf,
        #[command(flatten)]
        batch: BatchArgs,
    },
    /// Describe the model: manifest, input and output, optimised plan,
    /// and the memory plan `listen` would use.
    Info,
    /// Listen to a microphone and print the genre every hop until SIGINT/SIGTERM.
    Listen(Box<ListenArgs>),
    /// List audio input devices with their rates, channels and formats.
    Devices,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these definitions.
    Manpage,
    /// Whether the kiosk service should start: exits 0 when the config
    /// file says `autostart = true`, 1 when it does not (systemd's
    /// `ExecCondition=` then skips the unit quietly), 255 when the file
    /// cannot be read or is not valid (the unit fails, saying why).
    Autostart {
        /// listen's config file.
        #[arg(long, value_name = "FILE", default_value = "/etc/genrepi/genrepi.toml")]
        config: PathBuf,
    },
    /// Measure every variant of the model on this machine (load time,
    /// per-window median and p95 at 1 and all threads, peak memory,
    /// kernels) and cache the figures for `--variant auto`.
    Bench {
        /// Windows timed per variant and thread count (1 to 10000).
        #[arg(long, default_value_t = genrepi::bench::DEFAULT_WINDOWS, value_name = "N",
              value_parser = limits::parser(limits::BENCH_WINDOWS))]
        windows: usize,
        /// The table as JSON.
        #[arg(long)]
        json: bool,
        /// Internal: measure the model this process loaded and print one row.
        #[arg(long, hide = true)]
        child: bool,
    },
}

/// The window and worker options `eval` and `features` share.
#[derive(Args, Debug, Clone, Copy)]
struct BatchArgs {
    /// Seconds between window starts, 0.01 to 3600 [default: one
    /// window, no overlap].
    #[arg(long, value_name = "SECONDS", value_parser = limits::parser(limits::HOP_SECONDS))]
    hop: Option<f64>,
    /// Worker threads, 1 to 256 [default: all cores].
    #[arg(long, value_name = "N", value_parser = limits::parser(limits::JOBS))]
    jobs: Option<usize>,
}

/// `listen` options: a config file, and every setting it may hold (each
/// given here overrides the file's; one definition, `config::ListenConfig`).
#[derive(Args, Debug)]
struct ListenArgs {
    /// TOML config file with any of these settings (see deploy/genrepi.toml);
    /// SIGHUP rereads it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: ListenConfig,
}

fn main() -> ExitCode {
    genrepi::error::install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(&cli.common);
    if let Command::Autostart { config } = &cli.command {
        return autostart(config);
    }
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        // A closed pipe (`genrepi replay ... | head`) is the reader's choice, not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            error_line(&format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}

/// `genrepi autostart`: the exit code systemd's `ExecCondition=` reads.
fn autostart(config: &Path) -> ExitCode {
    match ListenConfig::load(config) {
        Ok(cfg) if cfg.autostart == Some(true) => {
            println!("genrepi: {}: autostart = true", config.display());
            ExitCode::SUCCESS
        }
        Ok(_) => {
            println!(
                "genrepi: {}: autostart is off; set `autostart = true` there to start the service",
                config.display()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            error_line(&format!("{e:#}"));
            ExitCode::from(255)
        }
    }
}

/// Writes `bytes` to stdout (a closed pipe ends quietly, see `main`).
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .context("stdout")
}

/// Prints `genrepi: error: MESSAGE` on stderr as one line: control
/// characters (a file name's newline or escape codes) are escaped, and a
/// broken stderr is ignored so it can never stop a batch.
fn error_line(message: &str) {
    let line = format!(
        "genrepi: error: {}\n",
        genrepi::output::escape_control(message)
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(common: &Common) {
    let level = match (common.quiet, common.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    // symphonia logs failed probes as errors; genrepi reports those itself.
    let filter = format!("{level},symphonia_core=off,symphonia=off");
    // Each record is one line: control characters in a message (a file
    // name's newline, escape codes) are escaped.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format(|buf, record| {
            let ts = buf.timestamp_millis();
            let message = record.args().to_string();
            writeln!(
                buf,
                "[{ts} {:<5} {}] {}",
                record.level(),
                record.target(),
                genrepi::output::escape_control(&message)
            )
        })
        .init();
}

/// Runs the command; `Ok(false)` when some inputs failed.
fn run(cli: Cli) -> anyhow::Result<bool> {
    let common = &cli.common;
    match &cli.command {
        Command::Listen(args) => return listen(common, args).map(|_| true),
        Command::Replay {
            files,
            realtime: true,
            json,
            hop,
            ..
        } => return replay_realtime(common, files, *json, *hop),
        Command::Devices => return devices().map(|_| true),
        Command::Completions { shell } => {
            // Into memory first: the generators panic on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "genrepi", &mut script);
            return write_stdout(&script).map(|_| true);
        }
        Command::Manpage => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .context("rendering the man page")?;
            return write_stdout(&page).map(|_| true);
        }
        Command::Bench {
            windows,
            json,
            child: false,
        } => return bench(common, *windows, *json).map(|_| true),
        _ => {}
    }
    let manifest = model::locate(common.model.as_deref())?;
    let rss_before = genrepi::platform::resident_memory();
    let options = model::LoadOptions {
        threads: common.threads.unwrap_or(1),
        variant: common.variant.clone(),
    };
    let model = Model::load_with(&manifest, &options, |_| Ok(())).context("loading the model")?;
    match cli.command {
        Command::Replay {
            files,
            json,
            hop,
            timings,
            ..
        } => {
            let hop_frames = hop_frames(&model, Some(hop))?;
            let format = if json { Format::Json } else { Format::Text };
            replay(&model, &files, hop_frames, format, timings)
        }
        Command::Eval { dir, report, batch } => {
            eval_command(common, &model, &dir, report.as_deref(), batch)
        }
        Command::Features { dir, out, batch } => {
            features_command(common, &model, &dir, &out, batch)
        }
        Command::Info => {
            print_info(&model).context("stdout")?;
            print_measured_memory(&model, rss_before)?;
            Ok(true)
        }
        Command::Bench { windows, .. } => {
            // A child of `genrepi bench`: one variant, one JSON row.
            let row = genrepi::bench::measure(&model, windows)?;
            write_stdout(format!("{}\n", serde_json::to_string(&row)?).as_bytes())?;
            Ok(true)
        }
        Command::Listen(_)
        | Command::Devices
        | Command::Completions { .. }
        | Command::Manpage
        | Command::Autostart { .. } => {
            unreachable!("handled above")
        }
    }
}

/// Worker threads for `eval` and `features`: `--jobs`, else one per core.
fn jobs_or_cores(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `genrepi eval`: the report file first (a closed or full stdout must not
/// lose it), then the summary on stdout. `Ok(false)` when a clip failed.
fn eval_command(
    common: &Common,
    model: &Arc<Model>,
    dir: &Path,
    report: Option<&Path>,
    batch: BatchArgs,
) -> anyhow::Result<bool> {
    let (hop_frames, jobs) = (hop_frames(model, batch.hop)?, batch.jobs);
    let started = Instant::now();
    let progress = Progress::new(!common.quiet, "clips");
    let result = eval::evaluate(model, dir, hop_frames, jobs_or_cores(jobs), &progress)?;
    if let Some(path) = report {
        result.write_json(path)?;
        log::info!("report written to {}", path.display());
    }
    let mut out = std::io::stdout().lock();
    write!(out, "{}", result.to_text()).context("stdout")?;
    writeln!(out, "wall time: {:.1} s", started.elapsed().as_secs_f64())
        .and_then(|_| out.flush())
        .context("stdout")?;
    Ok(result.failed.is_empty())
}

/// `genrepi features`: every window of a GTZAN-layout folder into an `.npz`.
fn features_command(
    common: &Common,
    model: &Arc<Model>,
    dir: &Path,
    out: &Path,
    batch: BatchArgs,
) -> anyhow::Result<bool> {
    let (hop_frames, jobs) = (hop_frames(model, batch.hop)?, batch.jobs);
    let progress = Progress::new(!common.quiet, "clips");
    let outcome =
        dataset::export_features(model, dir, out, hop_frames, jobs_or_cores(jobs), &progress)?;
    let line = format!(
        "{}: {} windows from {} clips ({} failed)\n",
        genrepi::output::escape_control(&out.display().to_string()),
        outcome.windows,
        outcome.clips,
        outcome.failed.len()
    );
    write_stdout(line.as_bytes())?;
    Ok(outcome.failed.is_empty())
}

/// Resident memory before loading, after loading and after a first
/// inference: what the model really costs here.
fn print_measured_memory(model: &Arc<Model>, before: Option<(u64, u64)>) -> anyhow::Result<()> {
    let Some((before, _)) = before else {
        return Ok(());
    };
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    let (loaded, _) = genrepi::platform::resident_memory().unwrap_or_default();
    let mut classifier = model.classifier()?;
    let f = &model.manifest().features;
    classifier.classify(&vec![-40.0; f.n_mels * f.frames])?;
    let (_, peak) = genrepi::platform::resident_memory().unwrap_or_default();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "measured:   RSS {:.0} MiB before loading, {:.0} MiB loaded (+{:.0}), \
         peak {:.0} MiB after one inference (+{:.0})",
        mb(before),
        mb(loaded),
        mb(loaded.saturating_sub(before)),
        mb(peak),
        mb(peak.saturating_sub(loaded))
    )
    .and_then(|_| out.flush())
    .context("stdout")?;
    Ok(())
}

fn listen(common: &Common, a: &ListenArgs) -> anyhow::Result<()> {
    // The global options that are listen settings too. Given on the command
    // line (--threads even as 1) they override the config file.
    let cli = ListenConfig {
        model: common.model.clone(),
        threads: common.threads,
        variant: match &common.variant {
            model::Choice::Auto => None,
            model::Choice::Named(name) => Some(name.clone()),
        },
        ..a.settings.clone()
    };
    kiosk::run(&cli, a.config.as_deref(), None)?;
    Ok(())
}

/// `genrepi bench`: one child process per variant and thread count.
fn bench(common: &Common, windows: usize, json: bool) -> anyhow::Result<()> {
    let manifest_path = model::locate(common.model.as_deref())?;
    let manifest = model::Manifest::read(&manifest_path)?;
    let platform = genrepi::platform::Platform::detect();
    // Variants this CPU does not run natively (FP16 on x86: ~250x slower)
    // are only measured when named.
    let variants: Vec<String> = match &common.variant {
        model::Choice::Named(name) => vec![name.clone()],
        model::Choice::Auto if manifest.variants.is_empty() => vec!["model".into()],
        model::Choice::Auto => manifest
            .variants
            .iter()
            .filter(|v| match model::variant::native(v.arithmetic, &platform) {
                Support::Native(_) => true,
                Support::Missing(why) => {
                    log::warn!(
                        "bench: skipping variant {} ({why}; --variant {} measures it)",
                        v.name,
                        v.name
                    );
                    false
                }
            })
            .map(|v| v.name.clone())
            .collect(),
    };
    // An int8 variant on AVX-512 VNNI is measured with each of tract's int8
    // kernel tiles (genrepi::bench::FMA_UNITS).
    let variants: Vec<(String, Vec<Option<u8>>)> = variants
        .into_iter()
        .map(|name| {
            let arithmetic = manifest
                .variants
                .iter()
                .find(|v| v.name == name)
                .map_or("-", |v| v.arithmetic.as_str());
            let units = genrepi::bench::fma_units_to_measure(arithmetic, &platform);
            (name, units)
        })
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = vec![1];
    if let Some(n) = common.threads.filter(|&n| n > 1) {
        threads.push(n);
    } else if cores > 1 {
        threads.push(cores);
    }
    let exe = std::env::current_exe().context("locating genrepi's own binary")?;
    let progress = Progress::new(!common.quiet, "runs");
    let rows = genrepi::bench::run_children(
        &exe,
        &manifest_path,
        &variants,
        &threads,
        windows,
        &progress,
    )?;
    let text = if json {
        format!("{}\n", serde_json::to_string_pretty(&rows)?)
    } else {
        genrepi::bench::table(&rows)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .context("stdout")?;
    if !manifest.variants.is_empty() && matches!(common.variant, model::Choice::Auto) {
        let path = genrepi::bench::Measurements::save(&manifest, &platform, rows)?;
        log::info!(
            "measurements cached in {}: --variant auto follows them on this CPU",
            path.display()
        );
    }
    Ok(())
}

fn devices() -> anyhow::Result<()> {
    let devices = genrepi::audio::capture::list_input_devices()?;
    use std::fmt::Write as _;
    let mut text = String::new();
    if devices.is_empty() {
        text.push_str("no input devices\n");
    }
    for d in devices {
        let default = if d.is_default { " (default)" } else { "" };
        let name = genrepi::output::escape_control(&d.name);
        let _ = writeln!(text, "{name}{default}");
        let _ = writeln!(
            text,
            "    id:      {}",
            genrepi::output::escape_control(&d.id)
        );
        if let Some(c) = &d.default_config {
            let _ = writeln!(text, "    default: {c}");
        }
        for c in &d.configs {
            let _ = writeln!(text, "    supports {c}");
        }
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .context("stdout")?;
    Ok(())
}

/// Window hop in STFT frames: `seconds`, or one whole window when `None`.
fn hop_frames(model: &Model, seconds: Option<f64>) -> anyhow::Result<usize> {
    let cfg = &model.manifest().features;
    match seconds {
        None => Ok(cfg.frames),
        // In range: checked by the option's parser.
        Some(s) => Ok(cfg.hop_frames_for(s)),
    }
}

fn replay(
    model: &Arc<Model>,
    files: &[PathBuf],
    hop_frames: usize,
    format: Format,
    timings: bool,
) -> anyhow::Result<bool> {
    let mut frontend = Frontend::new(&model.manifest().features, hop_frames)?;
    let mut classifier = model.classifier()?;
    let stdout = std::io::stdout();
    let mut printer = Printer::new(stdout.lock(), format, model.labels());
    let mut all_ok = true;
    for path in files {
        let name = path.display().to_string();
        let result = genrepi::error::contain(&name, || {
            let mut source = FileSource::open(path)?;
            let mut io_error = None;
            let result = classify_stream(&mut frontend, &mut classifier, &mut source, |p| {
                if let Err(e) = printer.window(&name, p) {
                    io_error.get_or_insert(e);
                }
            })?;
            Ok((result, io_error))
        });
        match result {
            Ok((result, io_error)) => {
                if let Some(e) = io_error {
                    return Err(e).context("stdout");
                }
                printer.verdict(&name, &result).context("stdout")?;
                if timings {
                    print_timings(
                        &name,
                        &result.stats.times,
                        result.stats.windows,
                        result.stats.audio_seconds,
                    );
                }
            }
            Err(e) => {
                if matches!(e, genrepi::Error::Panic { .. }) {
                    // Their state may be half-updated: start afresh.
                    frontend = Frontend::new(&model.manifest().features, hop_frames)?;
                    classifier = model.classifier()?;
                }
                error_line(&e.to_string());
                all_ok = false;
            }
        }
    }
    Ok(all_ok)
}

/// `replay --realtime`: each file through `listen`'s pipeline at real time.
fn replay_realtime(
    common: &Common,
    files: &[PathBuf],
    json: bool,
    hop: f64,
) -> anyhow::Result<bool> {
    let mut all_ok = true;
    for path in files {
        let cfg = ListenConfig {
            model: common.model.clone(),
            threads: common.threads,
            hop: Some(hop.to_string()),
            json: Some(json),
            variant: match &common.variant {
                model::Choice::Auto => None,
                model::Choice::Named(name) => Some(name.clone()),
            },
            input: Some(path.clone()),
            speed: Some(1.0),
            ..ListenConfig::default()
        };
        if let Err(e) = kiosk::run(&cfg, None, None) {
            if matches!(&e, genrepi::Error::Write { path, .. } if path.as_os_str() == "stdout") {
                return Err(e).context("stdout");
            }
            error_line(&e.to_string());
            all_ok = false;
        }
    }
    Ok(all_ok)
}

fn print_timings(name: &str, t: &StageTimes, windows: usize, audio_seconds: f64) {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let total = ms(t.decode) + ms(t.resample) + ms(t.features) + ms(t.inference);
    let line = format!(
        "{name}: {audio_seconds:.1} s of audio, {windows} windows: decode {:.1} ms, resample {:.1} ms, \
         features {:.1} ms, inference {:.1} ms ({:.1} ms/window); total {total:.1} ms ({:.0}x real time)",
        ms(t.decode),
        ms(t.resample),
        ms(t.features),
        ms(t.inference),
        ms(t.inference) / windows.max(1) as f64,
        audio_seconds * 1e3 / total.max(1e-9),
    );
    let line = format!("{}\n", genrepi::output::escape_control(&line));
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn print_info(model: &Model) -> std::io::Result<()> {
    let mut out = String::new();
    info_model(&mut out, model);
    info_platform(&mut out, model);
    let estimate = genrepi::model::estimate_memory(
        model,
        &genrepi::audio::CaptureSettings::default(),
        &LiveSettings::default(),
    );
    let _ = writeln!(
        out,
        "memory:     listen needs about {}",
        estimate.describe()
    );
    let m = model.manifest();
    if !m.provenance.is_empty() {
        let _ = writeln!(out, "provenance:");
        for (k, v) in &m.provenance {
            let _ = writeln!(out, "            {k} = {v}");
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()
}

/// `info`'s lines on the model: manifest, files, shapes, features, plan.
fn info_model(out: &mut String, model: &Model) {
    let m = model.manifest();
    let (nodes, ops) = model.plan_summary();
    let f = &m.features;
    let _ = writeln!(out, "model:      {}", m.name);
    let _ = writeln!(out, "manifest:   {}", model.manifest_path().display());
    let _ = writeln!(
        out,
        "onnx:       {} ({:.2} MB, sha256 {})",
        model.onnx_path().display(),
        model.onnx_bytes() as f64 / 1e6,
        m.sha256
    );
    let _ = writeln!(out, "labels:     {}", m.labels.join(", "));
    let _ = writeln!(
        out,
        "input:      {:?} f32, normalised (x - {}) / {}",
        m.input.shape, m.normalize.mean, m.normalize.std
    );
    let _ = writeln!(out, "output:     [1, {}] {:?}", m.labels.len(), m.output);
    let _ = writeln!(
        out,
        "features:   {} Hz, n_fft {}, hop {}, {} mels {}-{} Hz, {} frames ({:.2} s), top_db {}",
        f.sample_rate,
        f.n_fft,
        f.hop_length,
        f.n_mels,
        f.fmin,
        f.fmax,
        f.frames,
        f.window_seconds(),
        f.top_db
    );
    let _ = writeln!(
        out,
        "plan:       {nodes} nodes after optimisation, loaded in {:.0} ms, {} thread(s)",
        model.load_time().as_secs_f64() * 1e3,
        model.threads()
    );
    for (op, n) in &ops {
        let _ = writeln!(out, "            {n:4} x {op}");
    }
}

/// `info`'s lines on this CPU: its features, the variants (which run
/// natively here, which one was chosen and why) and tract's kernels.
fn info_platform(out: &mut String, model: &Model) {
    let platform = genrepi::platform::Platform::detect();
    let board = platform
        .board
        .as_deref()
        .map(|b| format!(", {b}"))
        .unwrap_or_default();
    let _ = writeln!(out, "cpu:        {}{board}", platform.arch);
    for f in &platform.features {
        let mark = if f.present { "yes" } else { "no " };
        let _ = writeln!(out, "            {mark} {:<11} {}", f.name, f.meaning);
    }
    let _ = match model.variant() {
        Some(v) => writeln!(
            out,
            "variant:    {} ({}): {}",
            v.name,
            v.arithmetic.as_str(),
            v.reason
        ),
        None => writeln!(out, "variant:    the manifest lists none"),
    };
    for v in &model.manifest().variants {
        let native = match model::variant::native(v.arithmetic, &platform) {
            Support::Native(why) => format!("native here: {why}"),
            Support::Missing(why) => format!("not native here: {why}"),
        };
        let accuracy = v.accuracy.as_deref().map(|a| format!("; {a}"));
        let _ = writeln!(
            out,
            "            {:<10} {:<5} {} ({native}){}",
            v.name,
            v.arithmetic.as_str(),
            v.model.display(),
            accuracy.unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "kernels:    {}",
        model.kernels().into_iter().collect::<Vec<_>>().join(" ")
    );
}
