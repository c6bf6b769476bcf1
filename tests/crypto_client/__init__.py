"""A Matrix client with real E2EE (matrix-js-sdk + Rust crypto in Node) for tests."""
