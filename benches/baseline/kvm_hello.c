/*
 * The baseline for `vmm bench --arch x86`'s start-to-HLT measurement: the least a program
 * can do to run a flat real-mode guest on /dev/kvm (in the spirit of dpw/kvm-hello-world).
 * Usage: kvm_hello IMAGE [MEM_BYTES]   -- loads IMAGE at 0x1000, enters it in real mode with
 * CS base 0, writes every byte the guest sends to port 0xf1/0xe9 to stdout (one write per
 * byte, as vmm does), exits 0 on HLT and 1 on anything else.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s IMAGE [MEM_BYTES]\n", argv[0]);
        return 2;
    }
    size_t mem_size = argc > 2 ? strtoull(argv[2], NULL, 0) : (256u << 20);

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");

    uint8_t *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) die("mmap");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (uint64_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");

    int img = open(argv[1], O_RDONLY);
    if (img < 0) die(argv[1]);
    ssize_t n = read(img, mem + 0x1000, mem_size - 0x1000);
    if (n <= 0) die("read image");
    close(img);

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");

    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs;
    memset(&regs, 0, sizeof regs);
    regs.rip = 0x1000;
    regs.rflags = 2;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
        switch (run->exit_reason) {
        case KVM_EXIT_HLT:
            /* Tear down in the order vmm does (vCPU, VM, then RAM): leaving it to exit()
             * unmaps RAM under a live memslot, which costs KVM ~2 ms more here. */
            munmap(run, run_size);
            close(vcpu);
            close(vm);
            munmap(mem, mem_size);
            return 0;
        case KVM_EXIT_IO:
            if (run->io.direction == KVM_EXIT_IO_OUT && (run->io.port == 0xf1 || run->io.port == 0xe9)) {
                if (write(1, (char *)run + run->io.data_offset, 1) < 0) { /* stdout closed: drop */ }
                break;
            }
            fprintf(stderr, "unexpected I/O on port 0x%x\n", run->io.port);
            return 1;
        default:
            fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
            return 1;
        }
    }
}
