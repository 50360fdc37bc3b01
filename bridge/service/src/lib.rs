//! The bridge relayer service (a placeholder process until the bridge issue): connects to its peers and reports them.
