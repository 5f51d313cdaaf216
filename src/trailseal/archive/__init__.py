"""The archive: sealed segments of each tenant's log in write-once storage, their tiers
and retention, and legal holds.

- ``worm``: the write-once store interface and the local folder store;
- ``s3``: the S3 store with Object Lock in COMPLIANCE mode;
- ``segments``: a segment's Parquet file and its signed manifest (pure);
- ``archiver``: seals each tenant's log into segments;
- ``retention``: policies, tier moves and the partition drop;
- ``holds``: legal holds.
"""
