//! The execution service: follows the ordered log, fetches batches from DA, executes, persists state, serves queries.
