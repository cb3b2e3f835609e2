//! `vmm`: a thin CLI. Parse arguments, pick a backend, run it, turn the outcome into an exit code.
mod cli;

use clap::Parser;
use cli::{Arch, Cli, Command, RunArgs};
use common::console::{restore_terminal, Console};
use common::error::EXIT_OK;
use common::image::Image;
use common::vm::{GuestExit, VmConfig};
#[cfg(not(target_arch = "x86_64"))]
use common::Error;
use common::Result;

fn main() {
    // The terminal may be in raw mode; put it back even if something panics.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        default_hook(info);
    }));
    #[cfg(not(target_arch = "x86_64"))]
    urvirt_riscv::lab::maybe_run_as_init();

    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => run(&args),
        Command::Info => info(),
    }
    .unwrap_or_else(|e| {
        restore_terminal();
        eprintln!("vmm: {e}");
        e.exit_code()
    });
    restore_terminal();
    std::process::exit(code);
}

fn run(args: &RunArgs) -> Result<i32> {
    let mem_size = match &args.mem {
        Some(s) => common::image::parse_size(s)?,
        None => match args.arch {
            Arch::X86 => cli::x86_default_mem(),
            Arch::Riscv => urvirt_riscv::config::DEFAULT_MEM,
        },
    };
    let timeout = args.timeout.map(cli::parse_timeout).transpose()?;
    let vm = VmConfig { mem_size, timeout, console: Console::stdout() };
    let image = Image::read(&args.image)?;
    let mut machine = match args.arch {
        Arch::X86 => cli::x86_vm(args, vm)?,
        Arch::Riscv => {
            urvirt_riscv::new_vm(urvirt_riscv::RiscvConfig { vm, ecall_trap: args.ecall.into(), stats: args.stats })?
        }
    };
    machine.load(&image)?;
    let outcome = machine.run()?;
    restore_terminal();
    if args.stats && (outcome.stats.total_count() > 0 || !outcome.stats.notes.is_empty()) {
        eprint!("{}", outcome.stats.table());
    }
    if let GuestExit::Failed(why) = &outcome.exit {
        eprintln!("vmm: {why}");
    }
    Ok(outcome.exit_code())
}

fn info() -> Result<i32> {
    #[cfg(target_arch = "x86_64")]
    {
        println!("{}", vmm_x86::info()?);
        Ok(EXIT_OK)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = EXIT_OK;
        Err(Error::bad_input("`vmm info` reports on KVM, which this build (not x86_64) does not use"))
    }
}
