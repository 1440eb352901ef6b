"""The write-test-fix loop's services: generate files from a reply, apply surgical edits, read test reports."""
