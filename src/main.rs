use clap::Parser;

fn main() {
    let cli = glm_wgpu::cli::Cli::parse();
    if let Err(e) = glm_wgpu::cli::main(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
