"""staff inbox: conversations, their messages, follow-ups, saved replies; direct messages
(staff replies, notices to staff) in the deliveries outbox

Revision ID: b7e4f19a2c01
Revises: 9da512b21ea9
Create Date: 2026-12-05 09:25:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = 'b7e4f19a2c01'
down_revision = '9da512b21ea9'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('inbox_saved_replies',
    sa.Column('id', ID, nullable=False),
    sa.Column('title', sa.String(length=80), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=254), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox_saved_replies'))
    )
    op.create_table('inbox_conversations',
    sa.Column('id', ID, nullable=False),
    sa.Column('supporter_id', ID, nullable=False),
    sa.Column('open_supporter_id', ID, nullable=True),
    sa.Column('identity_id', ID, nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('told', sa.Boolean(), nullable=False),
    sa.Column('assigned_to', ID, nullable=True),
    sa.Column('opened_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_message_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('waiting_since', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('first_reply_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_by', sa.String(length=254), nullable=True),
    sa.ForeignKeyConstraint(['assigned_to'], ['staff_users.id'], name=op.f('fk_inbox_conversations_assigned_to_staff_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], name=op.f('fk_inbox_conversations_identity_id_identities'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['supporter_id'], ['supporters.id'], name=op.f('fk_inbox_conversations_supporter_id_supporters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox_conversations')),
    sa.UniqueConstraint('open_supporter_id', name=op.f('uq_inbox_conversations_open_supporter_id'))
    )
    with op.batch_alter_table('inbox_conversations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbox_conversations_closed_at'), ['closed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbox_conversations_identity_id'), ['identity_id'], unique=False)
        batch_op.create_index('ix_inbox_conversations_status_flagged', ['status', 'flagged', 'waiting_since'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbox_conversations_supporter_id'), ['supporter_id'], unique=False)

    op.create_table('inbox_messages',
    sa.Column('id', ID, nullable=False),
    sa.Column('conversation_id', ID, nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('provider_id', sa.String(length=80), nullable=True),
    sa.Column('staff_user_id', ID, nullable=True),
    sa.Column('staff_name', sa.String(length=254), nullable=True),
    sa.ForeignKeyConstraint(['conversation_id'], ['inbox_conversations.id'], name=op.f('fk_inbox_messages_conversation_id_inbox_conversations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['staff_user_id'], ['staff_users.id'], name=op.f('fk_inbox_messages_staff_user_id_staff_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox_messages'))
    )
    with op.batch_alter_table('inbox_messages', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_messages_conversation', ['conversation_id', 'id'], unique=False)

    op.create_table('inbox_follow_ups',
    sa.Column('id', ID, nullable=False),
    sa.Column('message_id', ID, nullable=False),
    sa.Column('staff_user_id', ID, nullable=True),
    sa.Column('staff_name', sa.String(length=254), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['inbox_messages.id'], name=op.f('fk_inbox_follow_ups_message_id_inbox_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['staff_user_id'], ['staff_users.id'], name=op.f('fk_inbox_follow_ups_staff_user_id_staff_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox_follow_ups'))
    )
    with op.batch_alter_table('inbox_follow_ups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbox_follow_ups_message_id'), ['message_id'], unique=False)

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('inbox_message_id', ID, nullable=True))
        batch_op.alter_column('announcement_id', existing_type=ID, nullable=True)
        batch_op.create_index(batch_op.f('ix_deliveries_inbox_message_id'), ['inbox_message_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_deliveries_inbox_message_id_inbox_messages'), 'inbox_messages', ['inbox_message_id'], ['id'], ondelete='CASCADE')


def downgrade() -> None:
    op.execute("DELETE FROM deliveries WHERE announcement_id IS NULL")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_deliveries_inbox_message_id_inbox_messages'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_deliveries_inbox_message_id'))
        batch_op.alter_column('announcement_id', existing_type=ID, nullable=False)
        batch_op.drop_column('inbox_message_id')
        batch_op.drop_column('text')

    op.drop_table('inbox_follow_ups')
    op.drop_table('inbox_messages')
    op.drop_table('inbox_conversations')
    op.drop_table('inbox_saved_replies')
