"""The data layer: sources, prepared TFRecord datasets and the tf.data pipeline.

Modules import in one direction, from the bottom up:

    frames, synthetic        decoding, resizing and rendering frames
    frame_folders            folders of frame images
    source_base              `Clip`, `Source` and the splits
    time_split               train | gap | val | gap | test segments of one clip
    item_plan                a file source's plan (`ItemPlan`) and its checks
    generated, file_source   the two kinds of source (per index; windows of files)
    mnist, footage           Moving MNIST; video files and frame folders
    prepared_source          reading a prepared dataset (manifest, shards)
    sources                  `open_source`: the source a config names
    prepared                 `prepare`: any source written as a prepared dataset
    pipeline                 the tf.data input pipeline
"""
