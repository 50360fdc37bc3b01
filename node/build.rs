//! Embeds the git revision the binary is built from (`VERGEN_GIT_SHA`,
//! `VERGEN_GIT_DIRTY`) for `lamina --version`, the `lamina_build_info` metric and the
//! revision `lamina bench` records. Outside a git checkout (a source tarball) vergen
//! emits placeholder values instead of failing the build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let git = vergen_gitcl::GitclBuilder::default().sha(false).dirty(false).build()?;
    vergen_gitcl::Emitter::default().add_instructions(&git)?.emit()?;
    Ok(())
}
