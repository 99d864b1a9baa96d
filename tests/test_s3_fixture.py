import fsspec


def test_s3_server_round_trip(s3_bucket):
    fs = fsspec.filesystem("s3")
    with fs.open(f"{s3_bucket}/hello.txt", "wb") as f:
        f.write(b"frostline")
    assert fs.cat(f"{s3_bucket}/hello.txt") == b"frostline"
    assert fs.ls(s3_bucket) == [f"{s3_bucket}/hello.txt"]
