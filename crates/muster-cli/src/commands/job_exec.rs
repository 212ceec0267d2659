//! `muster __job-exec`: the job launcher `muster worker` starts for each job (hidden from
//! `--help`). Everything it does lives in `muster_worker::confine::launcher`.

use muster_worker::confine::launcher;

use crate::cli::JobExecArgs;

/// Runs the launcher (or its probe) and returns the process exit code.
pub fn run(args: &JobExecArgs) -> u8 {
    if args.probe {
        launcher::probe()
    } else if args.serve {
        muster_worker::confine::service::serve()
    } else {
        launcher::main()
    }
}
