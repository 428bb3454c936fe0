//! Standalone gossip node (the `clusterfunk gossip-node` subcommand).
