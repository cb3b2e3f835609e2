//! KVM's binary statistics of one vCPU (KVM_GET_STATS_FD): what KVM handled itself.
