"""Everything that knows SDSS: names and URLs, readers, the downloader and the simulator."""
