//! Command-line definitions of the four commands (clap derive), each converted into
//! the library's configuration. The man pages and completions are generated from here.

pub mod serve;
