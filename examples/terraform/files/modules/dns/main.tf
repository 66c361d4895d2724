# A DNS record stand-in pointing a friendly name at the database.
terraform {
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "2.1.2"
    }
  }
}

variable "zone" {
  type = string
}

variable "record" {
  type = string
}

variable "target" {
  type = string
}

resource "null_resource" "record" {
  triggers = {
    fqdn   = "${var.record}.${var.zone}"
    target = var.target
  }

  provisioner "local-exec" {
    command = "echo ${self.triggers.fqdn} CNAME ${self.triggers.target}"
  }
}

output "fqdn" {
  value = "${var.record}.${var.zone}"
}
