"""topicfeed core: settings, record schemas, taxonomy, the Parquet lake, ingestion and the simulator."""

__version__ = "0.1.0"
