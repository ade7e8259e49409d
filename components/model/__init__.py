"""The U-Net and how it is fed and trained: input pipeline, class weights, devices, workers."""
