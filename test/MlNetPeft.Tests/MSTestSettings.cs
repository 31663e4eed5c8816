// Tests share TorchSharp's global RNG and thread pool: run them one at a time.
[assembly: DoNotParallelize]
