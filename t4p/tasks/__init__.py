"""One module per training task (``train.task``): pretrain, semseg, insseg, det (being filled in, issue 16)."""
