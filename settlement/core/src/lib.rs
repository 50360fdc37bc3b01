//! Lamina's settlement core (types only for now): checkpoint claims, challenges and finality counted in log heights.
